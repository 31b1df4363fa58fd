package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/spf13/cobra"
)

// mediaTypeEnv is the environment variable containerd sets for a stream
// processor: the media type of the stream on stdin.
const mediaTypeEnv = "STREAM_PROCESSOR_MEDIATYPE"

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func newDecompressCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "decompress",
		Short: "Decompress a gzip or zstd layer from stdin to stdout (containerd's stream processor)",
		Long: `Decompress a gzip or zstd layer from stdin and write the tar to stdout.

gzip is decoded with pgzip, which inflates ahead of the reader on other
cores, zstd with klauspost/compress. The format is told by the stream's first
bytes; containerd's ` + mediaTypeEnv + ` only has to agree. This is the
stream processor that 'shoal configure containerd --stream-processor' registers:
containerd then unpacks layers with it. Errors go to stderr with a non-zero exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDecompress(cmd.InOrStdin(), cmd.OutOrStdout(), os.Getenv(mediaTypeEnv))
		},
	}
}

func runDecompress(in io.Reader, out io.Writer, mediaType string) error {
	br := bufio.NewReaderSize(in, 1<<20)
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decompress: read: %w", err)
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	var r io.Reader
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		if mediaType != "" && !strings.Contains(mediaType, "gzip") {
			return fmt.Errorf("decompress: stream is gzip but %s is %q", mediaTypeEnv, mediaType)
		}
		zr, err := pgzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("decompress: gzip: %w", err)
		}
		defer zr.Close()
		r = zr
	case bytes.HasPrefix(head, zstdMagic):
		if mediaType != "" && !strings.Contains(mediaType, "zstd") {
			return fmt.Errorf("decompress: stream is zstd but %s is %q", mediaTypeEnv, mediaType)
		}
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return fmt.Errorf("decompress: zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return fmt.Errorf("decompress: stdin is neither gzip nor zstd (first bytes %x, %s %q)", head, mediaTypeEnv, mediaType)
	}
	if _, err := io.Copy(bw, r); err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("decompress: write: %w", err)
	}
	return nil
}
