// Command fakehandler is a tiny custom handler for devhost's process tests. FAKE_MODE selects its
// behaviour: "" serves (POST /_exit makes it exit, to test restarts); "crash" exits 3 at once;
// "slow" never listens.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	switch os.Getenv("FAKE_MODE") {
	case "crash":
		fmt.Fprintln(os.Stderr, "fakehandler: boom at start-up")
		os.Exit(3)
	case "slow":
		fmt.Fprintln(os.Stderr, "fakehandler: too slow to listen")
		time.Sleep(time.Hour)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	mux.HandleFunc("/api/orgs/acme/big", func(w http.ResponseWriter, r *http.Request) {
		// As the real API does: a declared body over 1 MiB is refused before it is read.
		if r.ContentLength > 1<<20 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			w.Write([]byte(`{"type":"urn:leapchange:problem:payload-too-large","status":413}`))
			return
		}
		// An undeclared (chunked) body is refused once more than 1 MiB was read.
		if n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20+1)); n > 1<<20 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			w.Write([]byte(`{"type":"urn:leapchange:problem:payload-too-large","status":413}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"path": r.URL.RequestURI(), "pid": os.Getpid(),
			"port": os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"), "sb": os.Getenv("ServiceBusConnection"),
			"fromFile": os.Getenv("FROM_FILE"), "overridden": os.Getenv("OVERRIDDEN"),
			"worker": os.Getenv("FUNCTIONS_CUSTOMHANDLER_WORKER_ID"), "root": os.Getenv("FUNCTIONS_APP_ROOT_PATH"),
		})
	})
	mux.HandleFunc("POST /_exit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "fakehandler: exiting on request")
		os.Exit(4)
	})
	mux.HandleFunc("POST /{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"Outputs":{},"Logs":["ran ` + r.PathValue("name") + `"]}`))
	})
	fmt.Println("fakehandler: listening on", os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"))
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"), mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
