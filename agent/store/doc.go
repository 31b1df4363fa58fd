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
// Invariants:
//   - Integrity: the contiguous written prefix is hashed as it grows. A reader
//     never receives a blob's last byte before the whole blob has been
//     verified and committed, so every complete read is a verified read.
//   - Bytes, once written to an ingest, never change: a WriteAt over bytes
//     already written skips them, so what readers saw and what was hashed
//     stay what is on disk.
//   - Crash safety: a journal record is appended only after the data it
//     describes has been fsync'd, so after a crash (or kill -9) every recorded
//     range is on disk and anything unrecorded is simply fetched again. Torn
//     or corrupt data is caught by the final digest check, which discards the
//     ingest so the next Fetch starts from zero.
//   - Dedup: one running ingest per digest; concurrent Fetches join it.
//   - Eviction removes least-recently-used committed blobs and idle partial
//     ingests, never a blob with an open Reader and never a running ingest.
package store
