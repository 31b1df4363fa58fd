package agenttest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestProcessStop(t *testing.T) {
	t.Parallel()
	sh, err := lookTool("sh")
	if err != nil {
		t.Skip(err)
	}
	p := StartProcess(t, ProcessOptions{Env: []string{"GREETING=hello"}}, sh, "-c", `echo "$GREETING"; exec sleep 60`)
	// Wait for the greeting so that Stop hits the sleep, not the shell.
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(p.Logs(), "hello") {
		if time.Now().After(deadline) {
			t.Fatalf("no greeting in log %q", p.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Stop must end the child well before its 60 s and count SIGTERM as clean.
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
}

func TestRunToolFailure(t *testing.T) {
	t.Parallel()
	sh, err := lookTool("sh")
	if err != nil {
		t.Skip(err)
	}
	out, err := RunTool(context.Background(), nil, sh, "-c", "echo oops >&2; exit 3")
	if err == nil || !strings.Contains(out, "oops") {
		t.Fatalf("out %q, err %v: want the failure and its output", out, err)
	}
}

func TestWriteHtpasswd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		auth    BasicAuth
		wantErr bool
	}{
		{name: "ok", auth: BasicAuth{User: "alice", Password: "s3cret:with colon"}},
		{name: "empty user", auth: BasicAuth{Password: "x"}, wantErr: true},
		{name: "colon in user", auth: BasicAuth{User: "a:b", Password: "x"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, tt.name)
			err := writeHtpasswd(path, tt.auth)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			user, hash, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
			if !ok || user != tt.auth.User {
				t.Fatalf("line %q", b)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(tt.auth.Password)); err != nil {
				t.Fatalf("hash does not match the password: %v", err)
			}
		})
	}
}
