// Command loadgen drives HTTP load for Meterplane's benchmarks and prints one JSON object.
//
// It is a separate Go process so that the load costs little CPU next to the Python server
// on a 2-core machine, and latencies are measured without a Python client's overhead.
//
//	loadgen post -url U -bodies FILE -concurrency N -header K:V
//	    POSTs every body in FILE (each prefixed by a 4-byte big-endian length) once.
//	loadgen get -base U -paths FILE -rate R -duration D [-warmup W] -header K:V
//	    GETs the paths in FILE round-robin at R requests/s (open loop) for D, after W
//	    of the same load whose latencies are not recorded.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Requests int            `json:"requests"`
	Seconds  float64        `json:"seconds"`
	Statuses map[string]int `json:"statuses"`
	Errors   int            `json:"errors"`
	P50Ms    float64        `json:"p50_ms"`
	P99Ms    float64        `json:"p99_ms"`
	MaxMs    float64        `json:"max_ms"`
	RPS      float64        `json:"rps"`
	Late     int            `json:"late"`
}

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ",") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func client(n int) *http.Client {
	t := &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, MaxConnsPerHost: n, DisableCompression: true}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// tally collects the outcome of requests sent from many goroutines.
type tally struct {
	mu       sync.Mutex
	statuses map[string]int
	lat      []time.Duration
	errors   int
}

func newTally() *tally { return &tally{statuses: map[string]int{}} }

// record counts one response (draining its body) or one transport error.
func (t *tally) record(resp *http.Response, err error, d time.Duration) {
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.errors++
		return
	}
	t.statuses[fmt.Sprint(resp.StatusCode)]++
	t.lat = append(t.lat, d)
}

func setHeaders(req *http.Request, hs headers) {
	for _, h := range hs {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
}

func summarize(lat []time.Duration, statuses map[string]int, errors int, elapsed time.Duration, late int) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pick := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(q*float64(len(lat))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(lat) {
			i = len(lat) - 1
		}
		return float64(lat[i].Microseconds()) / 1000
	}
	r := result{Requests: len(lat), Seconds: elapsed.Seconds(), Statuses: statuses, Errors: errors,
		P50Ms: pick(0.50), P99Ms: pick(0.99), Late: late}
	if len(lat) > 0 {
		r.MaxMs = float64(lat[len(lat)-1].Microseconds()) / 1000
	}
	r.RPS = float64(len(lat)) / elapsed.Seconds()
	return r
}

func readBodies(path string) [][]byte {
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	var out [][]byte
	for len(data) >= 4 {
		n := binary.BigEndian.Uint32(data[:4])
		out = append(out, data[4:4+n])
		data = data[4+n:]
	}
	return out
}

func post(args []string) result {
	fs := flag.NewFlagSet("post", flag.ExitOnError)
	url := fs.String("url", "", "target URL")
	bodiesPath := fs.String("bodies", "", "length-prefixed bodies")
	conc := fs.Int("concurrency", 8, "parallel requests")
	var hs headers
	fs.Var(&hs, "header", "K:V (repeatable)")
	_ = fs.Parse(args)
	bodies := readBodies(*bodiesPath)
	c := client(*conc)
	var next int64 = -1
	t := newTally()
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1)
				if int(i) >= len(bodies) {
					return
				}
				req, _ := http.NewRequest("POST", *url, bytes.NewReader(bodies[i]))
				req.Header.Set("Content-Type", "application/json")
				setHeaders(req, hs)
				t0 := time.Now()
				resp, err := c.Do(req)
				t.record(resp, err, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	return summarize(t.lat, t.statuses, t.errors, time.Since(start), 0)
}

func get(args []string) result {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	base := fs.String("base", "", "base URL")
	pathsFile := fs.String("paths", "", "file with one path per line")
	rate := fs.Float64("rate", 1000, "requests per second (open loop)")
	duration := fs.Duration("duration", 5*time.Second, "how long to measure")
	warmup := fs.Duration("warmup", 0, "load at the same rate before measuring, not recorded")
	workers := fs.Int("workers", 64, "max requests in flight")
	var hs headers
	fs.Var(&hs, "header", "K:V (repeatable)")
	_ = fs.Parse(args)
	raw, err := os.ReadFile(*pathsFile)
	if err != nil {
		panic(err)
	}
	paths := strings.Fields(string(raw))
	// One client for both phases: the warm-up opens the connections the measurement uses.
	c := client(*workers)
	if *warmup > 0 {
		openLoop(c, *base, paths, hs, *rate, *warmup, *workers)
	}
	return openLoop(c, *base, paths, hs, *rate, *duration, *workers)
}

// openLoop sends GETs at rate for duration, each due at a fixed time whether or not
// earlier ones have returned. Requests fall due in groups, one group per millisecond (at
// 5,000/s, five at each), as they did when the dispatcher slept in Go's timers, which
// wake it about once a millisecond; latency counts from the group's due time, which the
// dispatcher now keeps to within tens of microseconds (see sleep_linux.go).
func openLoop(c *http.Client, base string, paths []string, hs headers, rate float64, duration time.Duration, workers int) result {
	jobs := make(chan time.Time, workers)
	t := newTally()
	var wg sync.WaitGroup
	var idx int64 = -1
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for scheduled := range jobs {
				i := atomic.AddInt64(&idx, 1)
				req, _ := http.NewRequest("GET", base+paths[int(i)%len(paths)], nil)
				setHeaders(req, hs)
				resp, err := c.Do(req)
				// Latency from the scheduled send time: queueing delay counts (no coordinated omission).
				t.record(resp, err, time.Since(scheduled))
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / rate)
	group := max(interval, time.Millisecond)
	defer preciseSleeper()()
	start := time.Now()
	late := 0
	for n := 0; ; n++ {
		offset := time.Duration(n) * interval
		if offset >= duration {
			break
		}
		at := start.Add(offset.Truncate(group))
		sleepUntil(at)
		select {
		case jobs <- at:
		default:
			late++ // every worker busy: the request is sent as soon as one frees up
			jobs <- at
		}
	}
	close(jobs)
	wg.Wait()
	return summarize(t.lat, t.statuses, t.errors, time.Since(start), late)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen post|get [flags]")
		os.Exit(2)
	}
	var r result
	switch os.Args[1] {
	case "post":
		r = post(os.Args[2:])
	case "get":
		r = get(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
