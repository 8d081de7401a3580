// Command kfake runs an in-memory Kafka broker (franz-go's kfake, the broker
// the tests use) as a process of its own, so that a test can stop it the way
// a host or a network stops a real broker (SIGSTOP: its connections stay
// open and nothing answers) and let it go on (SIGCONT):
//
//	go run ./internal/localsvc/cmd/kfake -port 9092
//
// It prints its address on stdout once it listens and runs until SIGTERM
// or SIGINT.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 0, "port to listen on (0: a free one)")
	flag.Parse()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(*port), kfake.AllowAutoTopicCreation())
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	fmt.Println(c.ListenAddrs()[0])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	c.Close()
}
