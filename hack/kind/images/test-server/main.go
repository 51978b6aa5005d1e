// Command test-server is the workload of svcplane's kind e2e checks, and their client.
//
//	test-server serve [addr]        HTTP: / answers with the pod's name; /readyz answers 200
//	                                until POST /fail, then 503 until POST /recover
//	test-server count <url> <n>     n GETs (new connection each), prints "<answer> <count>" lines
//	test-server lookup <name>       prints the name's addresses, one a line
//	test-server post <url>          one POST, prints the answer
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		addr := ":8080"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		err = serve(addr)
	case "count":
		if len(os.Args) != 4 {
			usage()
		}
		n, convErr := strconv.Atoi(os.Args[3])
		if convErr != nil {
			usage()
		}
		err = count(os.Args[2], n)
	case "post":
		if len(os.Args) != 3 {
			usage()
		}
		err = post(os.Args[2])
	case "lookup":
		if len(os.Args) != 3 {
			usage()
		}
		err = lookup(os.Args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "test-server:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: test-server serve [addr] | count <url> <n> | lookup <name> | post <url>")
	os.Exit(2)
}

func serve(addr string) error {
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	var failing atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			http.Error(w, "failing on request", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, _ *http.Request) {
		failing.Store(true)
		fmt.Fprintln(w, name, "now fails its readiness probe")
	})
	mux.HandleFunc("POST /recover", func(w http.ResponseWriter, _ *http.Request) {
		failing.Store(false)
		fmt.Fprintln(w, name, "passes its readiness probe again")
	})
	server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return server.ListenAndServe()
}

// count sends each request on a new connection, so that every request is balanced anew.
func count(url string, n int) error {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	answers := map[string]int{}
	for range n {
		answer := "error"
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answer = strings.TrimSpace(string(body))
		}
		answers[answer]++
	}
	keys := make([]string, 0, len(answers))
	for k := range answers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Println(k, answers[k])
	}
	return nil
}

func lookup(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		fmt.Println(a)
	}
	return nil
}

func post(url string) error {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Post(url, "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
