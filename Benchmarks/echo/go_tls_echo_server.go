// A Go crypto/tls echo server: one of the references of the TLS benchmarks (run-tls-bench.sh,
// tls-callgrind.sh).
//
//	go_tls_echo_server [--host 127.0.0.1] [--port 0] [--cert Certificates/server.crt]
//	                   [--key Certificates/server.key] [--procs 1]
//
// crypto/tls's default server configuration (TLS 1.3 and 1.2, session tickets on) with the
// certificate and key given; the load generator picks the cipher suite. One goroutine per
// connection reads (one record's plaintext per Read) and writes it back until EOF, then
// closes (sending close_notify). GOMAXPROCS is --procs (1, like the single-threaded loops it
// is compared with; the runtime's own threads, sysmon and the GC workers, still exist).
// Prints `listening on HOST:PORT` on stdout once it listens and exits 0 on SIGTERM or SIGINT
// after closing the listener and the connections, so valgrind tools see a normal exit.
//
// Build: CGO_ENABLED=0 go build -o go_tls_echo_server go_tls_echo_server.go (no module
// needed; the benchmark scripts build it into Benchmarks/.build/echo with GOCACHE under it).
// Without cgo the binary is static and valgrind can run it; callgrind still cannot deliver
// SIGTERM to Go's handler, so tls-callgrind.sh dumps its counts with callgrind_control.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (0: an ephemeral one)")
	certPath := flag.String("cert", "Certificates/server.crt", "PEM certificate chain")
	keyPath := flag.String("key", "Certificates/server.key", "PEM private key")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)

	certificate, err := tls.LoadX509KeyPair(*certPath, *keyPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go_tls_echo_server: %v\n", err)
		os.Exit(1)
	}
	config := &tls.Config{Certificates: []tls.Certificate{certificate}}
	listener, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "go_tls_echo_server: listen: %v\n", err)
		os.Exit(1)
	}

	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stopping := false
	go func() {
		for {
			raw, err := listener.Accept()
			if err != nil {
				return // the listener was closed
			}
			conn := tls.Server(raw, config) // Go sets TCP_NODELAY on TCP connections
			mu.Lock()
			if stopping {
				mu.Unlock()
				raw.Close()
				continue
			}
			conns[conn] = struct{}{}
			mu.Unlock()
			go func() {
				buffer := make([]byte, 65536)
				for {
					n, err := conn.Read(buffer)
					if n > 0 {
						if _, werr := conn.Write(buffer[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break // io.EOF after the client's close_notify or EOF, or an error
					}
				}
				conn.Close() // sends close_notify
				mu.Lock()
				delete(conns, conn)
				mu.Unlock()
			}()
		}
	}()

	fmt.Printf("listening on %s:%d\n", *host, listener.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	listener.Close()
	mu.Lock()
	stopping = true
	for conn := range conns {
		conn.Close()
	}
	mu.Unlock()
	os.Exit(0)
}
