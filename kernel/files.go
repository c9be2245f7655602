package kernel

import (
	"errors"
	"fmt"
	"strings"
)

// FileTable is a task's open files, as crash's files shows them.
type FileTable struct {
	Root, Cwd       string // task->fs root and pwd
	RootErr, CwdErr string // why one could not be read
	MaxFDs          uint64 // fdtable.max_fds
	Files           []OpenFile
}

// OpenFile is one open file descriptor.
type OpenFile struct {
	FD     int
	File   uint64 // struct file
	Dentry uint64
	Inode  uint64
	Mode   uint32 // inode i_mode, 0 when unread
	Path   string
	// Err says what of the file could not be read.
	Err string
}

// maxFDs bounds the descriptors read from one fdtable: max_fds comes from
// the dump and sizes the reads (the kernel's own limit, sysctl_nr_open,
// is 1<<20 by default).
const maxFDs = 1 << 20

// maxPathDepth bounds a path walk up the dentry and mount chains.
const maxPathDepth = 256

// The file type bits of i_mode (POSIX, include/uapi/linux/stat.h).
const (
	S_IFMT   = 0o170000
	S_IFSOCK = 0o140000
	S_IFLNK  = 0o120000
	S_IFREG  = 0o100000
	S_IFBLK  = 0o060000
	S_IFDIR  = 0o040000
	S_IFCHR  = 0o020000
	S_IFIFO  = 0o010000
)

// FileType names an i_mode's file type as crash's files does (REG, DIR,
// CHR, BLK, FIFO, SOCK, LNK), "" when unknown.
func FileType(mode uint32) string {
	switch mode & S_IFMT {
	case S_IFREG:
		return "REG"
	case S_IFDIR:
		return "DIR"
	case S_IFCHR:
		return "CHR"
	case S_IFBLK:
		return "BLK"
	case S_IFIFO:
		return "FIFO"
	case S_IFSOCK:
		return "SOCK"
	case S_IFLNK:
		return "LNK"
	}
	return ""
}

// pathLayout is what building a path reads: struct file, dentry, inode,
// vfsmount and the struct mount around it, from the type information.
type pathLayout struct {
	fPathMnt, fPathDentry, fInode           uint64
	dParent, dName, dNameLen, dInode, dSB   uint64
	mntRoot, mountMnt, mountParent, mountMP uint64
	iMode, iIno, sbType, fsName             uint64
	dHashPprev                              uint64 // NULL: unhashed (deleted)
}

// pathLayout looks up the offsets of pathLayout.
func (k *Kernel) pathLayout() (pathLayout, error) {
	b := k.Types
	var errs []error
	get := offsetGetter(b, &errs)
	var p pathLayout
	p.fPathMnt = get("file", "f_path.mnt")
	p.fPathDentry = get("file", "f_path.dentry")
	p.fInode = get("file", "f_inode")
	p.dParent = get("dentry", "d_parent")
	p.dName = get("dentry", "d_name.name")
	p.dNameLen = get("dentry", "d_name.len")
	p.dInode = get("dentry", "d_inode")
	p.dSB = get("dentry", "d_sb")
	p.dHashPprev = get("dentry", "d_hash.pprev")
	p.mntRoot = get("vfsmount", "mnt_root")
	// struct mount holds the struct vfsmount a path names.
	p.mountMnt = get("mount", "mnt")
	p.mountParent = get("mount", "mnt_parent")
	p.mountMP = get("mount", "mnt_mountpoint")
	p.iMode = get("inode", "i_mode")
	p.iIno = get("inode", "i_ino")
	p.sbType = get("super_block", "s_type")
	p.fsName = get("file_system_type", "name")
	return p, errors.Join(errs...)
}

// filePath is the path of an open struct file.
func (k *Kernel) filePath(file uint64, l *pathLayout) (string, error) {
	mnt, err1 := k.ReadU64(file + l.fPathMnt)
	dentry, err2 := k.ReadU64(file + l.fPathDentry)
	if err := errors.Join(err1, err2); err != nil {
		return "", fmt.Errorf("struct file %#x f_path: %w", file, err)
	}
	return k.dPath(dentry, mnt, l)
}

// dentryName reads a dentry's d_name by its length.
func (k *Kernel) dentryName(d uint64, l *pathLayout) (string, error) {
	np, err1 := k.ReadU64(d + l.dName)
	n, err2 := k.readU32(d + l.dNameLen)
	if err := errors.Join(err1, err2); err != nil {
		return "", fmt.Errorf("dentry %#x d_name: %w", d, err)
	}
	if n > 255 { // NAME_MAX
		return "", fmt.Errorf("dentry %#x: d_name of %d bytes", d, n)
	}
	buf := make([]byte, n)
	if err := k.Read(buf, np); err != nil {
		return "", fmt.Errorf("dentry %#x d_name at %#x: %w", d, np, err)
	}
	return string(buf), nil
}

// dPath builds a path as the kernel's d_path does: dentry names up the
// d_parent chain, crossing to a mount's mountpoint in its parent mount
// at each mount root, up to the root of the mount tree, with
// " (deleted)" after an unlinked file's. A dentry that is its own parent
// but no mount's root (pipes, sockets, anonymous inodes, shmem) is named
// the way those file systems' d_dname name it.
func (k *Kernel) dPath(dentry, vfsmnt uint64, l *pathLayout) (string, error) {
	if dentry == 0 || vfsmnt == 0 {
		return "", fmt.Errorf("path with dentry %#x, vfsmount %#x", dentry, vfsmnt)
	}
	p, err := k.walkPath(dentry, vfsmnt, l)
	if err != nil {
		return "", err
	}
	// d_unlinked: unhashed and not its own parent.
	parent, err1 := k.ReadU64(dentry + l.dParent)
	pprev, err2 := k.ReadU64(dentry + l.dHashPprev)
	if err := errors.Join(err1, err2); err != nil {
		return "", fmt.Errorf("dentry %#x: %w", dentry, err)
	}
	if pprev == 0 && parent != dentry {
		p += " (deleted)"
	}
	return p, nil
}

// walkPath is dPath's walk up the dentries and mounts.
func (k *Kernel) walkPath(dentry, vfsmnt uint64, l *pathLayout) (string, error) {
	mount := vfsmnt - l.mountMnt
	var parts []string
	for depth := 0; ; depth++ {
		if depth >= maxPathDepth {
			return "", fmt.Errorf("dentry %#x: path deeper than %d", dentry, maxPathDepth)
		}
		root, err := k.ReadU64(mount + l.mountMnt + l.mntRoot)
		if err != nil {
			return "", fmt.Errorf("vfsmount %#x mnt_root: %w", mount+l.mountMnt, err)
		}
		if dentry == root {
			parent, err1 := k.ReadU64(mount + l.mountParent)
			mp, err2 := k.ReadU64(mount + l.mountMP)
			if err := errors.Join(err1, err2); err != nil {
				return "", fmt.Errorf("struct mount %#x: %w", mount, err)
			}
			if parent == mount || parent == 0 {
				break // the root of the mount tree
			}
			dentry, mount = mp, parent
			continue
		}
		parent, err := k.ReadU64(dentry + l.dParent)
		if err != nil {
			return "", fmt.Errorf("dentry %#x d_parent: %w", dentry, err)
		}
		name, err := k.dentryName(dentry, l)
		if err != nil {
			return "", err
		}
		if parent == dentry {
			if len(parts) == 0 {
				return k.pseudoName(dentry, name, l), nil
			}
			// A disconnected dentry: the path from there.
			parts = append(parts, name)
			break
		}
		parts = append(parts, name)
		dentry = parent
	}
	var sb strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		sb.WriteString("/")
		sb.WriteString(parts[i])
	}
	if sb.Len() == 0 {
		return "/", nil
	}
	return sb.String(), nil
}

// pseudoName names a file of an internal mount as its file system's
// d_dname does: pipe:[INO], socket:[INO], anon_inode:NAME; shmem and
// hugetlbfs files (memfd, MAP_SHARED|MAP_ANONYMOUS) as simple_dname,
// "/NAME (deleted)"; else /NAME.
func (k *Kernel) pseudoName(dentry uint64, name string, l *pathLayout) string {
	fs := ""
	if sb, err := k.ReadU64(dentry + l.dSB); err == nil && sb != 0 {
		if ft, err := k.ReadU64(sb + l.sbType); err == nil && ft != 0 {
			if np, err := k.ReadU64(ft + l.fsName); err == nil && np != 0 {
				fs, _ = k.readCString(np, 32)
			}
		}
	}
	ino := func() string {
		inode, err := k.ReadU64(dentry + l.dInode)
		if err != nil || inode == 0 {
			return "?"
		}
		n, err := k.ReadU64(inode + l.iIno)
		if err != nil {
			return "?"
		}
		return fmt.Sprint(n)
	}
	switch fs {
	case "pipefs":
		return "pipe:[" + ino() + "]"
	case "sockfs":
		return "socket:[" + ino() + "]"
	case "anon_inodefs":
		return "anon_inode:" + name
	case "tmpfs", "shmem", "hugetlbfs":
		return "/" + name + " (deleted)"
	}
	return "/" + name
}

// Files reads a task's open files (task->files->fdt: max_fds and the fd
// array) and its root and working directory (task->fs), as crash's
// files prints them. A file that cannot be read is listed with the
// reason; the error says why the table itself could not be read.
func (k *Kernel) Files(t *Task) (*FileTable, error) {
	if t.Unreadable != "" {
		return nil, fmt.Errorf("pid %d: task_struct unreadable: %s", t.PID, t.Unreadable)
	}
	b := k.Types
	filesOff, err1 := b.Offset("task_struct", "files")
	fsOff, err2 := b.Offset("task_struct", "fs")
	fdtOff, err3 := b.Offset("files_struct", "fdt")
	maxOff, err4 := b.Offset("fdtable", "max_fds")
	fdOff, err5 := b.Offset("fdtable", "fd")
	rootOff, err6 := b.Offset("fs_struct", "root")
	pwdOff, err7 := b.Offset("fs_struct", "pwd")
	pMnt, err8 := b.Offset("path", "mnt")
	pDentry, err9 := b.Offset("path", "dentry")
	l, err10 := k.pathLayout()
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10); err != nil {
		return nil, fmt.Errorf("open files layout: %w", err)
	}
	ft := &FileTable{}
	fs, err := k.ReadU64(t.Addr + fsOff)
	switch {
	case err != nil:
		ft.RootErr = fmt.Sprintf("task %#x fs: %v", t.Addr, err)
		ft.CwdErr = ft.RootErr
	case fs == 0:
		ft.RootErr, ft.CwdErr = "no fs_struct", "no fs_struct"
	default:
		path := func(p uint64) (string, string) {
			mnt, err1 := k.ReadU64(p + pMnt)
			d, err2 := k.ReadU64(p + pDentry)
			if err := errors.Join(err1, err2); err != nil {
				return "", fmt.Sprintf("fs_struct %#x: %v", fs, err)
			}
			s, err := k.dPath(d, mnt, &l)
			if err != nil {
				return s, err.Error()
			}
			return s, ""
		}
		ft.Root, ft.RootErr = path(fs + rootOff)
		ft.Cwd, ft.CwdErr = path(fs + pwdOff)
	}
	files, err := k.ReadU64(t.Addr + filesOff)
	if err != nil {
		return ft, fmt.Errorf("task %#x files: %w", t.Addr, err)
	}
	if files == 0 {
		return ft, nil // exited, or a kernel thread without files
	}
	fdt, err := k.ReadU64(files + fdtOff)
	if err != nil {
		return ft, fmt.Errorf("files_struct %#x fdt: %w", files, err)
	}
	nfds, err1 := k.readU32(fdt + maxOff)
	arr, err2 := k.ReadU64(fdt + fdOff)
	if err := errors.Join(err1, err2); err != nil {
		return ft, fmt.Errorf("fdtable %#x: %w", fdt, err)
	}
	if nfds > maxFDs {
		return ft, fmt.Errorf("fdtable %#x: max_fds %d is over %d", fdt, nfds, maxFDs)
	}
	ft.MaxFDs = uint64(nfds)
	// The fd array, read a page at a time: an excluded page loses its
	// descriptors, said in the error, not the others'.
	var errs []error
	page := max(k.Dump.PageSize(), 8)
	buf := make([]byte, page)
	for i, n := uint64(0), uint64(0); i < ft.MaxFDs; i += n {
		a := arr + i*8
		n = min(ft.MaxFDs-i, (page-a%page)/8)
		if n == 0 {
			return ft, fmt.Errorf("fdtable %#x: fd array at %#x is not word aligned", fdt, arr)
		}
		if err := k.Read(buf[:n*8], a); err != nil {
			errs = append(errs, fmt.Errorf("fdtable %#x fd[%d..%d] at %#x: %w", fdt, i, i+n-1, a, err))
			continue
		}
		for j := uint64(0); j < n; j++ {
			f := le64(buf[j*8:])
			if f == 0 {
				continue
			}
			of := OpenFile{FD: int(i + j), File: f}
			k.readOpenFile(&of, &l)
			ft.Files = append(ft.Files, of)
		}
	}
	return ft, errors.Join(errs...)
}

// readOpenFile fills in what an open file's struct file says.
func (k *Kernel) readOpenFile(of *OpenFile, l *pathLayout) {
	var err error
	if of.Dentry, err = k.ReadU64(of.File + l.fPathDentry); err != nil {
		of.Err = fmt.Sprintf("struct file %#x: %v", of.File, err)
		return
	}
	if of.Inode, err = k.ReadU64(of.File + l.fInode); err != nil {
		of.Err = fmt.Sprintf("struct file %#x f_inode: %v", of.File, err)
	} else if of.Inode != 0 {
		var m [2]byte
		if err := k.Read(m[:], of.Inode+l.iMode); err != nil {
			of.Err = fmt.Sprintf("inode %#x i_mode: %v", of.Inode, err)
		} else {
			of.Mode = uint32(m[0]) | uint32(m[1])<<8
		}
	}
	p, err := k.filePath(of.File, l)
	of.Path = p
	if err != nil && of.Err == "" {
		of.Err = err.Error()
	}
}
