// Command render writes the default render of the shoal chart
// (deploy/kubernetes/shoal.yaml): go run ./cmd/render -out shoal.yaml, from
// deploy/kubernetes.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/shoal-dev/shoal/deploy/kubernetes"
)

func main() {
	chart := flag.String("chart", "charts/shoal", "chart directory")
	out := flag.String("out", "shoal.yaml", "file to write (- for standard output)")
	flag.Parse()
	ms, err := kubernetes.Render(*chart, kubernetes.DefaultRelease, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	text := kubernetes.Join(ms)
	if *out == "-" {
		fmt.Print(text)
		return
	}
	if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}
