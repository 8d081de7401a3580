package ingest

import (
	"io"
	"net"
	"strings"
	"testing"
)

// chunkConn returns its chunks, one per Read.
type chunkConn struct {
	net.Conn
	chunks []string
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks = c.chunks[1:]
	return n, nil
}

// headConn keeps a request's head only while its header block is not
// whole, wherever the reads cut it, and at most the read buffer's size.
func TestHeadConnCapture(t *testing.T) {
	read := func(chunks ...string) *headConn {
		t.Helper()
		c := &headConn{Conn: &chunkConn{chunks: chunks}, capturing: true}
		buf := make([]byte, 2*connReadBuffer)
		for range chunks {
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	for _, chunks := range [][]string{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"},
		{"GET / HTTP/1.1\r\nHost: x\r\n", "\r\n"},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r", "\nbody"},
		{"GET / HTTP/1.1\r\nHost: x\r", "\n\r\n"},
		{"GET / HTTP/1.1\r\nHost: x", "\r", "\n\r\n"},
	} {
		if c := read(chunks...); c.head != nil || c.capturing {
			t.Errorf("%q: a whole header block still kept (%v, capturing %v)", chunks, c.head != nil, c.capturing)
		}
	}
	if c := read("GET / HTTP/1.1\r\nHost: x\r\n", "Origin: https://a.example\r\n"); c.head == nil || string(*c.head) != "GET / HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n" || !c.capturing {
		t.Errorf("an unfinished head not kept")
	}
	big := "POST /v1/t HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\nCookie: c=" + strings.Repeat("c", 17000)
	c := read(big[:3000], big[3000:])
	if c.head == nil || len(*c.head) != connReadBuffer || c.capturing {
		t.Fatalf("head over the read buffer: kept %d bytes, capturing %v", len(*c.head), c.capturing)
	}
	c.nextRequest()
	if c.head != nil || !c.capturing {
		t.Errorf("nextRequest: head kept, or not capturing")
	}
}
