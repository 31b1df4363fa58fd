package unpack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Apply applies staged layers in order on top of rootfs, an existing
// directory, with OCI whiteout semantics, then sets directory metadata.
// Staged files are moved (renamed) into rootfs, so the staging directories
// must be on the same filesystem and are consumed.
func Apply(ctx context.Context, rootfs string, layers []*Layer) error {
	a := newApplier(rootfs)
	for i, l := range layers {
		if err := a.apply(ctx, l); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return a.finish(ctx)
}

// applier owns the rootfs under construction. Every path in it is reached
// with lstatBeneath or through directories merge has just verified, so a
// symlink in the tree is never followed.
type applier struct {
	root   string
	isRoot bool
	dirs   map[string]meta // explicit directory metadata; the upper layer wins
}

func newApplier(root string) *applier {
	return &applier{root: root, isRoot: os.Geteuid() == 0, dirs: map[string]meta{}}
}

func (a *applier) abs(rel string) string { return filepath.Join(a.root, filepath.FromSlash(rel)) }

// realDir reports whether rel is a directory reached without symlinks.
func (a *applier) realDir(rel string) (bool, error) {
	if rel == "." {
		return true, nil
	}
	fi, err := lstatBeneath(a.root, rel)
	if err != nil {
		return false, err
	}
	return fi != nil && fi.IsDir(), nil
}

func (a *applier) apply(ctx context.Context, l *Layer) error {
	// Whiteouts and opaque markers hide lower layers only, so they go
	// before this layer's own files.
	for _, d := range l.opaque {
		ok, err := a.realDir(d)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		entries, err := os.ReadDir(a.abs(d))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(a.abs(d), e.Name())); err != nil {
				return err
			}
		}
		for k := range a.dirs {
			if d == "." && k != "." || strings.HasPrefix(k, d+"/") {
				delete(a.dirs, k)
			}
		}
	}
	for _, w := range l.whiteouts {
		ok, err := a.realDir(path.Dir(w))
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := os.RemoveAll(a.abs(w)); err != nil {
			return err
		}
		prune(a.dirs, w)
	}
	if err := a.merge(ctx, l, "."); err != nil {
		return err
	}
	if err := a.links(l); err != nil {
		return err
	}
	for k, m := range l.dirs {
		a.dirs[k] = m
	}
	return nil
}

// merge moves the staged directory rel into the rootfs, where rel is known
// to be a real directory.
func (a *applier) merge(ctx context.Context, l *Layer, rel string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	src := filepath.Join(l.Dir, filepath.FromSlash(rel))
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		child := path.Join(rel, e.Name())
		s, d := filepath.Join(src, e.Name()), a.abs(child)
		dfi, err := os.Lstat(d)
		if errors.Is(err, fs.ErrNotExist) {
			// Fast path: the whole subtree moves in one rename.
			if err := os.Rename(s, d); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if e.IsDir() && dfi.IsDir() {
			if err := a.merge(ctx, l, child); err != nil {
				return err
			}
			continue
		}
		if _, explicit := l.dirs[child]; e.IsDir() && !explicit && dfi.Mode()&fs.ModeSymlink != 0 {
			// The layer has files below child but never declared child
			// itself: it means to write through the lower layer's symlink.
			return fmt.Errorf("%w: %q is a symlink in a lower layer and this layer writes below it", ErrUnsafeEntry, child)
		}
		if dfi.IsDir() || e.IsDir() {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
			prune(a.dirs, child)
		}
		if err := os.Rename(s, d); err != nil {
			return err
		}
	}
	return nil
}

// links creates the layer's hard links to files of lower layers.
func (a *applier) links(l *Layer) error {
	names := make([]string, 0, len(l.links))
	for n := range l.links {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		target := l.links[name]
		tfi, err := lstatBeneath(a.root, target)
		if err != nil {
			return err
		}
		if tfi == nil || tfi.IsDir() {
			return fmt.Errorf("%w: hard link %q: target %q is not a file of the image", ErrUnsafeEntry, name, target)
		}
		ok, err := a.realDir(path.Dir(name))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: hard link %q: parent is not a directory", ErrUnsafeEntry, name)
		}
		d := a.abs(name)
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		prune(a.dirs, name)
		if err := os.Link(a.abs(target), d); err != nil {
			return err
		}
	}
	return nil
}

// finish sets the metadata of directories declared by the layers, last,
// because adding entries changes a directory's mtime and a read-only mode
// would have blocked them. Deepest first, so a parent's mode never stands in
// the way of its children.
func (a *applier) finish(ctx context.Context) error {
	keys := make([]string, 0, len(a.dirs))
	for k := range a.dirs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		return cmp.Or(cmp.Compare(depth(y), depth(x)), strings.Compare(x, y))
	})
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		ok, err := a.realDir(k)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		m, p := a.dirs[k], a.abs(k)
		if a.isRoot {
			if err := os.Lchown(p, m.uid, m.gid); err != nil {
				return err
			}
		}
		if err := os.Chmod(p, m.mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		if err := setTimes(p, m); err != nil {
			return err
		}
	}
	return nil
}

func depth(rel string) int {
	if rel == "." {
		return 0
	}
	return strings.Count(rel, "/") + 1
}
