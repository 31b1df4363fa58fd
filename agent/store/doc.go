// Package store is the agent's crash-safe, streaming, content-addressed blob
// store.
//
// It follows containerd's content store: a blob is ingested into a temporary
// file, verified against its size and sha256 digest, and committed by rename.
// Unlike containerd it streams: readers see bytes as soon as a Filler has
// written them, while the download is still running.
//
//	Fetch(dgst, size, fill) ──► ingest/<hex>          ◄── Filler.WriteAt (any order, concurrent)
//	                             ingest/<hex>.journal     written ranges, fsync'd in batches
//	                                  │ all bytes written, size and sha256 verified
//	                                  ▼ fsync, rename, fsync dir
//	                             blobs/sha256/<hex>   ──► Reader.ReadAt (pread)
//
// <dir>/lock is flock'd so that two stores never share a directory.
//
// Invariants:
//   - Integrity: the contiguous written prefix is hashed as it grows. A reader
//     never receives a blob's last byte before the whole blob has been
//     verified and committed, so every complete read is a verified read.
//   - Bytes, once written to an ingest, never change: a WriteAt over bytes
//     already written skips them, so what readers saw and what was hashed
//     stay what is on disk.
//   - Crash safety: a journal record is appended only after the data it
//     describes has been fsync'd (in the background, every
//     Config.JournalSyncBytes, so the fill never waits for the disk), so
//     after a crash, even a power loss, every recorded range is on disk and
//     anything unrecorded is simply fetched again. Torn or corrupt data is
//     caught by the final digest check, which discards the ingest so the
//     next Fetch starts from zero. A commit fsyncs the file, renames it and
//     fsyncs the directory before the last byte is released.
//   - A failed fill (the filler's error, or Close) keeps its partial ingest
//     for the next Fetch to resume; a digest or size mismatch or ENOSPC
//     deletes it.
//   - Dedup: one running ingest per digest; concurrent Fetches join it.
//   - Eviction removes least-recently-used committed blobs and idle partial
//     ingests, never a blob with an open Reader and never a running ingest.
package store
