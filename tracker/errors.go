package tracker

import (
	"errors"
	"net/http"
)

// Sentinel errors, shared by the server and the client: the server maps them
// to HTTP statuses, the client maps statuses back to them.
var (
	// ErrNotFound: the origin does not have the blob.
	ErrNotFound = errors.New("tracker: not found")
	// ErrUnavailable: the tracker or the origin could not be reached or
	// could not answer now; worth retrying.
	ErrUnavailable = errors.New("tracker: unavailable")
	// ErrUnauthorized: wrong or missing cluster token.
	ErrUnauthorized = errors.New("tracker: unauthorized")
	// ErrInvalid: a request or a response that breaks the protocol.
	ErrInvalid = errors.New("tracker: invalid")
	// ErrPending: seeding started but no metainfo is known yet; ask again.
	ErrPending = errors.New("tracker: metainfo pending")
	// ErrCertificate: the tracker's TLS certificate does not verify against
	// the client's CAs (wrong CA, wrong name, expired). Retrying cannot help.
	ErrCertificate = errors.New("tracker: certificate not trusted")
	// ErrPolicy: the tracker and the agent cut blobs by different piece
	// policies (piece.Policy): one of them is older than the other. The
	// agent gets its blobs from the origin until both are upgraded.
	ErrPolicy = errors.New("tracker: another piece policy")
)

// ErrorBody is the JSON body of every non-200 answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// codes is the one table between sentinels, wire codes and HTTP statuses.
var codes = []struct {
	err    error
	code   string
	status int
}{
	{ErrInvalid, "INVALID", http.StatusBadRequest},
	{ErrUnauthorized, "UNAUTHORIZED", http.StatusUnauthorized},
	{ErrForbidden, "FORBIDDEN", http.StatusForbidden},
	{ErrBusy, "BUSY", http.StatusTooManyRequests},
	{ErrNotFound, "NOT_FOUND", http.StatusNotFound},
	{ErrPending, "PENDING", http.StatusAccepted},
	{ErrPolicy, "PIECE_POLICY", http.StatusConflict},
	{ErrUnavailable, "UNAVAILABLE", http.StatusServiceUnavailable},
}

// StatusOf returns the wire code and status for err; anything unknown is a
// server-side failure, reported as unavailable so clients retry.
func StatusOf(err error) (code string, status int) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, c.status
		}
	}
	return "UNAVAILABLE", http.StatusServiceUnavailable
}

// errorOf maps a non-200 status back to a sentinel.
func errorOf(status int) error {
	for _, c := range codes {
		if c.status == status {
			return c.err
		}
	}
	if status >= 500 {
		return ErrUnavailable
	}
	return ErrInvalid
}
