package gdbfiles

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/klauspost/compress/zstd"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/privdir"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/rofile"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
	"github.com/vmcore-gdbserver/vmcore-gdbserver/symbols"
)

// ModuleFiles finds the .ko of loaded modules in directories (searched
// recursively, in order): plain, .ko.xz or .ko.zst, and separate debug
// files. Compressed ones are decompressed for gdb, which needs a file it
// can open: into a private directory made for this ModuleFiles (mode 0700,
// removed by Close), or into CacheDir if set, which must be a directory
// owned by this user that nobody else can write.
type ModuleFiles struct {
	Dirs     []string
	CacheDir string
	// MaxSize bounds a decompressed module (DefaultMaxModuleSize if 0):
	// a real one is a few MB, a crafted one could be many GB.
	MaxSize int64
	// NoDecompress makes Find return a compressed file as it is found,
	// for listings that outlive the process (the `mod` command).
	NoDecompress bool
	// ByBuildID, if set, finds a module's file by the build id the dump
	// holds, when none of Dirs has a file of that build id.
	ByBuildID func(name, buildID string) (string, error)

	once  sync.Once
	index map[string]string // normalized module name -> path

	mu      sync.Mutex
	dir     string // where decompressed files go, once chosen
	ownDir  bool   // dir was made here and is removed by Close
	closed  bool
	decomps map[string]*decompJob // by content hash and file name
}

// DefaultMaxModuleSize is far above any real module (the largest Debian
// ships are tens of MB with debug info).
const DefaultMaxModuleSize = 256 << 20

// ErrModuleTooLarge reports a compressed module that expands past MaxSize.
var ErrModuleTooLarge = errors.New("decompressed module exceeds the size cap")

// ErrUnsafeCacheDir reports a CacheDir another user could plant files in.
var ErrUnsafeCacheDir = privdir.ErrUnsafe

type decompJob struct {
	done chan struct{}
	path string
	err  error
}

// DefaultModuleDirs are where Debian puts module debug files and modules.
func DefaultModuleDirs(release string) []string {
	return []string{"/usr/lib/debug/lib/modules/" + release, "/lib/modules/" + release}
}

// normalizeModName maps file and module names alike: the kernel turns
// '-' into '_' in module names.
func normalizeModName(n string) string { return strings.ReplaceAll(n, "-", "_") }

func (f *ModuleFiles) build() {
	f.index = map[string]string{}
	for _, dir := range f.Dirs {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			name := d.Name()
			for _, ext := range []string{".ko", ".ko.debug", ".ko.xz", ".ko.zst"} {
				if !strings.HasSuffix(name, ext) {
					continue
				}
				mod := normalizeModName(strings.TrimSuffix(name, ext))
				if _, seen := f.index[mod]; seen { // earlier dirs win
					continue
				}
				// Only regular files (a symlink to one is fine): opening
				// a FIFO or a device would hang or read forever.
				if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
					continue
				}
				f.index[mod] = path
			}
			return nil
		})
	}
}

// Find returns a loadable (uncompressed) file for the module.
func (f *ModuleFiles) Find(module string) (string, error) {
	f.once.Do(f.build)
	path, ok := f.index[normalizeModName(module)]
	if !ok {
		return "", fmt.Errorf("no %s.ko in %s", module, strings.Join(f.Dirs, ", "))
	}
	switch {
	case f.NoDecompress:
	case strings.HasSuffix(path, ".ko.zst"), strings.HasSuffix(path, ".ko.xz"):
		return f.decompress(path)
	}
	return path, nil
}

// FindModule returns a file for the loaded module m: the one Find names,
// if its build id is m's (a file of another build would place wrong
// symbols), else the one ByBuildID finds. In NoDecompress mode a
// compressed file is returned unchecked.
func (f *ModuleFiles) FindModule(m *kernel.Module) (string, error) {
	var errs []string
	path, err := f.Find(m.Name)
	if err == nil {
		if m.BuildID == "" || f.NoDecompress && isCompressed(path) {
			return path, nil
		}
		id, err := fileBuildID(path)
		if err == nil && id == m.BuildID {
			return path, nil
		}
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			errs = append(errs, fmt.Sprintf("%s is not the loaded module (build id %s, the dump's %s)", path, id, m.BuildID))
		}
	} else {
		errs = append(errs, err.Error())
	}
	if f.ByBuildID != nil && m.BuildID != "" {
		p, err := f.ByBuildID(m.Name, m.BuildID)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err.Error())
	}
	return "", errors.New(strings.Join(errs, "; "))
}

func isCompressed(path string) bool {
	return strings.HasSuffix(path, ".ko.zst") || strings.HasSuffix(path, ".ko.xz")
}

func fileBuildID(path string) (string, error) {
	r, _, err := rofile.Open(path)
	if err != nil {
		return "", err
	}
	defer r.Close()
	id, err := symbols.ELFBuildID(r)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// Close removes the private directory of decompressed modules, if this
// ModuleFiles made one. Files in a caller's CacheDir stay.
func (f *ModuleFiles) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.ownDir && f.dir != "" {
		err := os.RemoveAll(f.dir)
		f.dir, f.ownDir = "", false
		return err
	}
	return nil
}

func (f *ModuleFiles) maxSize() int64 {
	if f.MaxSize > 0 {
		return f.MaxSize
	}
	return DefaultMaxModuleSize
}

// outDir returns the directory for decompressed files, making the private
// one on first use. Called with f.mu held.
func (f *ModuleFiles) outDir() (string, error) {
	if f.closed {
		return "", fmt.Errorf("module files closed")
	}
	if f.dir != "" {
		return f.dir, nil
	}
	if f.CacheDir == "" {
		// A fresh, randomly named 0700 directory: nobody else can have
		// made it or put anything in it.
		d, err := os.MkdirTemp("", "vmcore-gdbserver-modules-")
		if err != nil {
			return "", fmt.Errorf("module cache: %w", err)
		}
		f.dir, f.ownDir = d, true
		return d, nil
	}
	if err := checkPrivateDir(f.CacheDir); err != nil {
		return "", err
	}
	f.dir = f.CacheDir
	return f.dir, nil
}

// checkPrivateDir makes dir (0700) if it is missing, and otherwise
// accepts only a directory of this user's alone (privdir.Check).
func checkPrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("module cache %s: %w", dir, err)
	}
	if err := privdir.Check(dir); err != nil {
		return fmt.Errorf("module cache %s: %w", dir, err)
	}
	return nil
}

// decompress unpacks path once per content: concurrent callers for the
// same file wait for one decompression. The output is named by the
// compressed file's sha256, so two different files of one name (two
// kernel releases' qemu_fw_cfg.ko.zst) never share an output.
func (f *ModuleFiles) decompress(path string) (string, error) {
	in, err := openRegular(path)
	if err != nil {
		return "", err
	}
	defer in.Close()
	h := sha256.New()
	// The compressed file is read twice (hash, then decompress) through
	// one descriptor; a module is never larger than the output cap.
	n, err := io.Copy(h, io.LimitReader(in, f.maxSize()+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if n > f.maxSize() {
		return "", fmt.Errorf("%s: %w: the compressed file alone is over %d MiB", path, ErrModuleTooLarge, f.maxSize()>>20)
	}
	base := filepath.Base(path)
	outName := strings.TrimSuffix(strings.TrimSuffix(base, ".xz"), ".zst")
	sum := hex.EncodeToString(h.Sum(nil))
	key := sum + "/" + base

	return f.makeOnce(key, func(dir string) (string, error) {
		return f.unpack(in, n, path, filepath.Join(dir, sum[:32]), outName)
	})
}

// makeOnce makes the file for key in the private directory the first time it
// is asked for; later and concurrent callers get that result.
func (f *ModuleFiles) makeOnce(key string, create func(dir string) (string, error)) (string, error) {
	f.mu.Lock()
	if j, ok := f.decomps[key]; ok {
		f.mu.Unlock()
		<-j.done
		return j.path, j.err
	}
	dir, err := f.outDir()
	if err != nil {
		f.mu.Unlock()
		return "", err
	}
	if f.decomps == nil {
		f.decomps = map[string]*decompJob{}
	}
	j := &decompJob{done: make(chan struct{})}
	f.decomps[key] = j
	f.mu.Unlock()

	j.path, j.err = create(dir)
	if j.err != nil {
		j.path = ""
	}
	close(j.done)
	return j.path, j.err
}

// WriteFile puts data the server generated for gdb (the unwind object)
// beside the decompressed modules: in the same private directory, under a
// subdirectory named by the content's sha256, written like a
// decompression (O_EXCL temporary file, renamed into place). The same
// bytes give the same path, written once.
func (f *ModuleFiles) WriteFile(name string, data []byte) (string, error) {
	if name == "" || filepath.Base(name) != name || int64(len(data)) > f.maxSize() {
		return "", fmt.Errorf("generated file %q of %d bytes: bad name or over %d MiB", name, len(data), f.maxSize()>>20)
	}
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	key := sum + "/" + name
	return f.makeOnce(key, func(dir string) (string, error) {
		return writeNew(filepath.Join(dir, sum[:32]), name, data)
	})
}

// writeNew writes data to subdir/name through an O_EXCL temporary file
// renamed into place, which never follows a link planted at either name.
func writeNew(subdir, name string, data []byte) (string, error) {
	if err := os.Mkdir(subdir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("writing %s: %w", name, err)
	}
	if st, err := os.Lstat(subdir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("writing %s: %s is not a directory", name, subdir)
	}
	tmp, err := os.CreateTemp(subdir, name+".tmp-*") // O_EXCL, mode 0600
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", name, err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	out := filepath.Join(subdir, name)
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing %s: %w", out, err)
	}
	return out, nil
}

// openRegular opens path for reading, refusing anything but a regular
// file without blocking on a FIFO.
func openRegular(path string) (*os.File, error) {
	in, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := in.Stat()
	if err != nil {
		in.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		in.Close()
		return nil, fmt.Errorf("%s: not a regular file (%v)", path, st.Mode().Type())
	}
	return in, nil
}

// unpack streams the decompressed in into subdir/name, never past
// MaxSize. The file is created with O_EXCL (which never follows a link)
// under a random temporary name and renamed into place when complete.
func (f *ModuleFiles) unpack(in *os.File, compressed int64, path, subdir, name string) (string, error) {
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if err := os.Mkdir(subdir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("decompressing %s: %w", path, err)
	}
	if st, err := os.Lstat(subdir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("decompressing %s: %s is not a directory", path, subdir)
	}
	out := filepath.Join(subdir, name)
	tmp, err := os.CreateTemp(subdir, name+".tmp-*") // O_EXCL, mode 0600
	if err != nil {
		return "", fmt.Errorf("decompressing %s: %w", path, err)
	}
	fail := func(err error) (string, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	limit := outputCap(f.maxSize(), compressed)
	var written int64
	if strings.HasSuffix(path, ".zst") {
		written, err = unzstd(tmp, in, limit)
	} else {
		written, err = unxz(tmp, in, limit)
	}
	if written > limit {
		return fail(fmt.Errorf("decompressing %s: %w of %s (%d times the compressed %d bytes, at most %d MiB); not a real module", path, ErrModuleTooLarge, sizeStr(limit), maxRatio, compressed, f.maxSize()>>20))
	}
	if err != nil {
		return fail(fmt.Errorf("decompressing %s: %w", path, err))
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("decompressing %s: %w", path, err)
	}
	// rename replaces whatever is at out (a link included) without
	// following it.
	if err := os.Rename(tmp.Name(), out); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("decompressing %s: %w", path, err)
	}
	return out, nil
}

// maxRatio and minCap bound a module's output by its compressed size too:
// real modules shrink 3 to 10 times, a bomb of zeros thousands of times,
// so a bomb stops after a few MiB instead of at MaxSize.
const (
	maxRatio = 100
	minCap   = 16 << 20
)

func outputCap(max, compressed int64) int64 {
	c := max
	if compressed < max/maxRatio {
		c = compressed * maxRatio
	}
	if c < minCap {
		c = minCap
	}
	if c > max {
		c = max
	}
	return c
}

func sizeStr(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// zstdMaxWindow bounds the decoder's memory: zstd -19 uses 8 MiB windows,
// --ultra -22 128 MiB for inputs that large; a module never needs more.
const zstdMaxWindow = 128 << 20

// unzstd copies at most limit+1 decompressed bytes to w; more than limit
// written means the input is too large.
func unzstd(w io.Writer, r io.Reader, limit int64) (int64, error) {
	dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxWindow))
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	n, err := io.Copy(w, io.LimitReader(dec, limit+1))
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
		// The frame header alone declares more than the caps allow.
		return n, fmt.Errorf("%w: the zstd window is over %d MiB: %v", ErrModuleTooLarge, zstdMaxWindow>>20, err)
	}
	return n, err
}

// unxz runs xz-utils (Go has no xz decoder in its standard library; xz is
// on every Debian system) with the file on its stdin, no shell and no
// file name on its command line, and a bounded dictionary memory; it is
// killed once the output passes limit.
func unxz(w io.Writer, r io.Reader, limit int64) (int64, error) {
	cmd := exec.Command("xz", "--decompress", "--stdout", "--quiet", "--memlimit-decompress=256MiB", "--threads=1")
	cmd.Stdin = r
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n, copyErr := io.Copy(w, io.LimitReader(out, limit+1))
	if n > limit || copyErr != nil {
		cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if n > limit {
		return n, nil
	}
	if copyErr != nil {
		return n, copyErr
	}
	if waitErr != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return n, fmt.Errorf("xz: %s", strings.ReplaceAll(msg, "\n", " "))
		}
		return n, fmt.Errorf("xz: %w", waitErr)
	}
	return n, nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b.Write(p[:room])
	}
	return len(p), nil
}

// AllocSections lists the SHF_ALLOC sections of a .ko in file order: what
// gdb relocates, one address each.
func AllocSections(path string) ([]string, error) {
	f, _, err := rofile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return allocSections(f, path)
}

func allocSections(r io.ReaderAt, path string) ([]string, error) {
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer ef.Close()
	if ef.Type != elf.ET_REL {
		return nil, fmt.Errorf("%s: not a relocatable module (type %v)", path, ef.Type)
	}
	var out []string
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 {
			out = append(out, s.Name)
		}
	}
	return out, nil
}
