package localsvc

// RedisCommand exposes redisCommand to the external test package.
var RedisCommand = redisCommand
