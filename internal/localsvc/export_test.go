package localsvc

// RedisCommand exposes redisCommand to the external test package.
var RedisCommand = redisCommand

// Done is closed when the server process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// FourLetterWord exposes fourLetterWord to the external test package.
var FourLetterWord = fourLetterWord
