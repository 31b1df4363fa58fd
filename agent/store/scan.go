package store

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

func isHex(name string) bool {
	if len(name) != 64 || strings.ToLower(name) != name {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}

// scan indexes blobs/sha256 and ingest/. In ingest/ only complete pairs of a
// data file and a journal with a valid header survive; anything else is junk
// from a crash and is removed.
func (d *Disk) scan() error {
	type seen struct {
		dgst    digest.Digest
		e       *entry
		modTime time.Time
	}
	var all []seen
	blobEntries, err := os.ReadDir(d.blobsDir)
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	for _, de := range blobEntries {
		fi, err := de.Info()
		if err != nil || !isHex(de.Name()) || !fi.Mode().IsRegular() {
			d.log.Warn("store: ignoring unexpected file in blobs", "name", de.Name())
			continue
		}
		dg := digest.NewDigestFromEncoded(digest.SHA256, de.Name())
		e := &entry{size: fi.Size()}
		d.blobs[dg] = e
		d.usage += e.size
		all = append(all, seen{dg, e, fi.ModTime()})
	}

	ingestEntries, err := os.ReadDir(d.ingestDir)
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	names := make(map[string]bool, len(ingestEntries))
	for _, de := range ingestEntries {
		names[de.Name()] = true
	}
	remove := func(name, why string) {
		d.log.Info("store: removing leftover ingest file", "name", name, "reason", why)
		if err := os.RemoveAll(filepath.Join(d.ingestDir, name)); err != nil {
			d.log.Warn("store: cannot remove leftover", "name", name, "error", err)
		}
	}
	for _, de := range ingestEntries {
		name := de.Name()
		hexName, isJournal := strings.CutSuffix(name, ".journal")
		switch {
		case !isHex(hexName) || !de.Type().IsRegular():
			remove(name, "not an ingest")
		case !isJournal && !names[name+".journal"]:
			remove(name, "no journal")
		case isJournal && !names[hexName]:
			remove(name, "no data")
		case isJournal:
			dg := digest.NewDigestFromEncoded(digest.SHA256, hexName)
			b, err := os.ReadFile(filepath.Join(d.ingestDir, name))
			var size int64
			if err == nil {
				size, _, _, err = parseJournal(b)
			}
			fi, ierr := de.Info()
			switch {
			case err != nil || ierr != nil:
				remove(name, "unreadable journal")
				remove(hexName, "unreadable journal")
			case d.blobs[dg] != nil:
				remove(name, "already committed")
				remove(hexName, "already committed")
			default:
				e := &entry{size: size}
				d.partials[dg] = e
				d.usage += size
				all = append(all, seen{dg, e, fi.ModTime()})
			}
		}
	}
	// Seed the LRU clock from modification times: the best a restart knows.
	slices.SortFunc(all, func(a, b seen) int { return a.modTime.Compare(b.modTime) })
	for _, s := range all {
		d.clock++
		s.e.used = d.clock
	}
	return nil
}
