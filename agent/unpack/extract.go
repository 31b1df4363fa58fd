package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Layer is a layer extracted by Extract into a staging directory, ready to be
// applied on top of lower layers by Apply.
type Layer struct {
	Dir   string // staging directory holding the layer's files
	Files int64  // entries created
	Bytes int64  // regular-file bytes written

	// Whiteouts, opaque markers and hard links to lower layers cannot be
	// represented in the staging tree, so they are kept here for Apply.
	dirs      map[string]meta   // directories with an explicit tar header
	whiteouts []string          // paths removed from lower layers
	opaque    []string          // directories whose lower contents are hidden
	links     map[string]string // hard link name → target in a lower layer
}

type meta struct {
	mode     fs.FileMode
	uid, gid int
	atime    time.Time
	mtime    time.Time
}

// Extract reads the tar stream r to its end and writes its entries into dir,
// which must exist and is normally empty. Nothing is written outside dir:
// names are cleaned and must be relative without "..", and no entry is
// written through a symlink. Bytes are charged to b (nil: no limit).
func Extract(ctx context.Context, r io.Reader, dir string, b *Budget) (*Layer, error) {
	x := &extractor{
		root:   dir,
		budget: b,
		isRoot: os.Geteuid() == 0,
		known:  map[string]bool{".": true},
		buf:    make([]byte, 256<<10),
		l: &Layer{
			Dir:   dir,
			dirs:  map[string]meta{},
			links: map[string]string{},
		},
	}
	sr := &streamReader{ctx: ctx, r: r, budget: b}
	tr := tar.NewReader(sr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return nil, err
		}
	}
	// The diff_id covers the whole stream, including padding after the
	// end-of-archive marker; read it so the caller's hash sees every byte.
	if _, err := io.CopyBuffer(io.Discard, sr, x.buf); err != nil {
		return nil, fmt.Errorf("reading tar: %w", err)
	}
	return x.l, nil
}

// streamReader charges the decompressed stream to the budget and stops at
// cancellation.
type streamReader struct {
	ctx    context.Context
	r      io.Reader
	budget *Budget
}

func (s *streamReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	if berr := s.budget.takeStream(int64(n)); berr != nil {
		return n, berr
	}
	return n, err
}

type extractor struct {
	root   string
	budget *Budget
	isRoot bool
	known  map[string]bool // relative paths verified to be real directories
	buf    []byte
	l      *Layer
}

// cleanName turns a tar name into a clean relative path ("." for the root).
func cleanName(n string) (string, error) {
	if n == "" || strings.IndexByte(n, 0) >= 0 {
		return "", fmt.Errorf("%w: invalid name %q", ErrUnsafeEntry, n)
	}
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("%w: absolute name %q", ErrUnsafeEntry, n)
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: name %q leaves the root", ErrUnsafeEntry, n)
	}
	return c, nil
}

func (x *extractor) abs(rel string) string { return filepath.Join(x.root, filepath.FromSlash(rel)) }

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	parent, base := path.Split(name)
	parent = path.Clean(parent) // "" → "."
	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(name, parent, base)
	}
	m := meta{
		mode:  hdr.FileInfo().Mode(),
		uid:   hdr.Uid,
		gid:   hdr.Gid,
		atime: hdr.AccessTime,
		mtime: hdr.ModTime,
	}
	if hdr.Typeflag == tar.TypeDir {
		return x.dir(name, m)
	}
	if name == "." {
		return fmt.Errorf("%w: non-directory entry for the root", ErrUnsafeEntry)
	}
	if err := x.parents(parent); err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	p := x.abs(name)
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		err = x.file(name, p, hdr.Size, m, r)
	case tar.TypeSymlink:
		err = x.create(name, p, func() error { return os.Symlink(hdr.Linkname, p) })
		if err == nil {
			err = x.symlinkMeta(p, m)
		}
	case tar.TypeLink:
		err = x.hardlink(name, p, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = x.node(name, p, hdr, m)
	default:
		err = fmt.Errorf("%w: %q has tar type %q", ErrUnsupported, name, hdr.Typeflag)
	}
	if err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	x.l.Files++
	return nil
}

func (x *extractor) whiteout(name, parent, base string) error {
	switch {
	case base == whiteoutOpaque:
		x.l.opaque = append(x.l.opaque, parent)
	case strings.HasPrefix(base, whiteoutMeta):
		// Other aufs metadata (.wh..wh.plnk, ...): not part of the tree.
	default:
		target := strings.TrimPrefix(base, whiteoutPrefix)
		if target == "" || target == "." || target == ".." {
			return fmt.Errorf("%w: invalid whiteout %q", ErrUnsafeEntry, name)
		}
		x.l.whiteouts = append(x.l.whiteouts, path.Join(parent, target))
	}
	return nil
}

// parents makes sure every component of dir is a real directory in the
// staging tree, creating missing ones. Walking from the root with Lstat means
// no component is ever reached through a symlink.
func (x *extractor) parents(dir string) error {
	if x.known[dir] {
		return nil
	}
	cur := "."
	for _, c := range strings.Split(dir, "/") {
		cur = path.Join(cur, c)
		if x.known[cur] {
			continue
		}
		p := x.abs(cur)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: parent %q is a symlink", ErrUnsafeEntry, cur)
		case !fi.IsDir():
			return fmt.Errorf("%w: parent %q is not a directory", ErrUnsafeEntry, cur)
		}
		x.known[cur] = true
	}
	return nil
}

func (x *extractor) dir(name string, m meta) error {
	if name != "." {
		parent := path.Dir(name)
		if err := x.parents(parent); err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
		p := x.abs(name)
		fi, err := os.Lstat(p)
		switch {
		case err == nil && fi.IsDir():
			// Already there: only the metadata changes.
		case err == nil || errors.Is(err, fs.ErrNotExist):
			if err == nil {
				if err := x.remove(name, p); err != nil {
					return fmt.Errorf("%q: %w", name, err)
				}
			}
			if err := os.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("%q: %w", name, err)
			}
		default:
			return fmt.Errorf("%q: %w", name, err)
		}
		delete(x.l.links, name)
		x.known[name] = true
		x.l.Files++
	}
	x.l.dirs[name] = m
	return nil
}

// remove deletes what an earlier entry of this layer left at name.
func (x *extractor) remove(name, p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		// Cached verdicts about paths below it no longer hold.
		clear(x.known)
		x.known["."] = true
		prune(x.l.dirs, name)
		prune(x.l.links, name)
		return os.RemoveAll(p)
	}
	return os.Remove(p)
}

// create runs mk, replacing whatever an earlier entry put at name.
func (x *extractor) create(name, p string, mk func() error) error {
	delete(x.l.links, name)
	err := mk()
	if errors.Is(err, fs.ErrExist) {
		if err := x.remove(name, p); err != nil {
			return err
		}
		err = mk()
	}
	return err
}

func (x *extractor) file(name, p string, size int64, m meta, r io.Reader) error {
	if size < 0 {
		return fmt.Errorf("%w: negative size", ErrUnsafeEntry)
	}
	if err := x.budget.checkEntry(name, size); err != nil {
		return err
	}
	var f *os.File
	err := x.create(name, p, func() (err error) {
		f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	n, err := io.CopyBuffer(budgetWriter{f, x.budget}, r, x.buf)
	x.l.Bytes += n
	if err == nil && x.isRoot {
		err = f.Chown(m.uid, m.gid)
	}
	if err == nil {
		// After chown, which clears setuid and setgid.
		err = f.Chmod(m.mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return setTimes(p, m)
}

type budgetWriter struct {
	w io.Writer
	b *Budget
}

func (w budgetWriter) Write(p []byte) (int, error) {
	if err := w.b.takeFiles(int64(len(p))); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}

func (x *extractor) hardlink(name, p, linkname string) error {
	target, err := cleanName(linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if target == "." || target == name {
		return fmt.Errorf("%w: hard link to %q", ErrUnsafeEntry, linkname)
	}
	fi, err := lstatBeneath(x.root, target)
	if err != nil {
		return err
	}
	if fi == nil {
		// Not in this layer: the target lives in a lower layer, and the
		// link is made by Apply once those are in place.
		if err := x.remove(name, p); err != nil {
			return err
		}
		x.l.links[name] = target
		return nil
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: hard link to directory %q", ErrUnsafeEntry, linkname)
	}
	return x.create(name, p, func() error { return os.Link(x.abs(target), p) })
}

func (x *extractor) node(name, p string, hdr *tar.Header, m meta) error {
	perm := uint32(m.mode.Perm())
	var mk func() error
	switch hdr.Typeflag {
	case tar.TypeFifo:
		mk = func() error { return unix.Mkfifo(p, perm) }
	default:
		if !x.isRoot {
			return fmt.Errorf("%w: device node needs root", ErrUnsupported)
		}
		kind := uint32(unix.S_IFCHR)
		if hdr.Typeflag == tar.TypeBlock {
			kind = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		mk = func() error { return unix.Mknod(p, kind|perm, int(dev)) }
	}
	if err := x.create(name, p, mk); err != nil {
		return err
	}
	if x.isRoot {
		if err := os.Lchown(p, m.uid, m.gid); err != nil {
			return err
		}
	}
	if err := os.Chmod(p, m.mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return setTimes(p, m)
}

// setMeta sets ownership (as root) and times of a symlink without following
// it.
func (x *extractor) symlinkMeta(p string, m meta) error {
	if x.isRoot {
		if err := os.Lchown(p, m.uid, m.gid); err != nil {
			return err
		}
	}
	return setTimes(p, m)
}

// setTimes never follows a final symlink.
func setTimes(p string, m meta) error {
	if m.mtime.IsZero() {
		return nil
	}
	at := m.atime
	if at.IsZero() {
		at = m.mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(m.mtime.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// lstatBeneath returns the Lstat of root/rel, reached without following any
// symlink, or nil if it does not exist that way (a missing component, or a
// component that is a symlink or not a directory).
func lstatBeneath(root, rel string) (fs.FileInfo, error) {
	cur := root
	parts := strings.Split(rel, "/")
	for i, c := range parts {
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if i == len(parts)-1 {
			return fi, nil
		}
		if !fi.IsDir() {
			return nil, nil
		}
	}
	return nil, nil
}

// prune deletes key and everything below it.
func prune[V any](m map[string]V, key string) {
	for k := range m {
		if k == key || strings.HasPrefix(k, key+"/") || key == "." {
			delete(m, k)
		}
	}
}
