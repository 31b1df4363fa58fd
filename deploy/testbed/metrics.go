package testbed

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// receivedMetric counts what an agent got, labelled by source.
const receivedMetric = "shoal_swarm_received_bytes_total"

// Sources are the values of the source label, in the order reports use.
var Sources = [...]string{"peer", "seeder", "origin"}

// Received is bytes an agent got from each source.
type Received struct {
	Peer   int64 `json:"peer"`
	Seeder int64 `json:"seeder"`
	Origin int64 `json:"origin"`
}

// Total is every byte received.
func (r Received) Total() int64 { return r.Peer + r.Seeder + r.Origin }

func (r Received) add(o Received) Received {
	return Received{Peer: r.Peer + o.Peer, Seeder: r.Seeder + o.Seeder, Origin: r.Origin + o.Origin}
}

// parseReceived reads the received-bytes counters from Prometheus text
// exposition. A counter that is absent is zero (the agent has not received
// anything from that source yet); an unknown source is ignored.
func parseReceived(text string) (Received, error) {
	var r Received
	for lineNo, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, receivedMetric)
		if !ok || !strings.HasPrefix(rest, "{") {
			continue
		}
		end := strings.LastIndexByte(rest, '}')
		if end < 0 {
			return Received{}, fmt.Errorf("%w: metrics line %d: unterminated labels", ErrParse, lineNo+1)
		}
		labels, value := rest[1:end], strings.TrimSpace(rest[end+1:])
		// An optional timestamp follows the value.
		if i := strings.IndexByte(value, ' '); i >= 0 {
			value = value[:i]
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v > math.MaxInt64/2 {
			return Received{}, fmt.Errorf("%w: metrics line %d: value %q", ErrParse, lineNo+1, value)
		}
		switch labelValue(labels, "source") {
		case "peer":
			r.Peer = int64(v)
		case "seeder":
			r.Seeder = int64(v)
		case "origin":
			r.Origin = int64(v)
		}
	}
	return r, nil
}

// labelValue finds name="value" in a label set. Values here never hold
// escaped quotes or commas, so a plain split is enough; anything odd just
// does not match.
func labelValue(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k == name && len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			return v[1 : len(v)-1]
		}
	}
	return ""
}
