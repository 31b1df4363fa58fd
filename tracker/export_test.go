package tracker

import "errors"

// NoAnswer is an error as a request that got no answer returns it.
var NoAnswer error = unreachable{errors.New("dial tcp: connection refused")}
