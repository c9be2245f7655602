package triage

import (
	"fmt"
	"io"
	"strconv"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/kernel"
)

// TaskHeader is the line crash prints above a task's vm or files.
type TaskHeader struct {
	PID     int32  `json:"pid"`
	Task    string `json:"task"`
	CPU     int    `json:"cpu"`
	Command string `json:"command"`
}

func (h TaskHeader) text(w io.Writer) {
	fmt.Fprintf(w, "PID: %-7d TASK: %s  CPU: %-3d COMMAND: %q\n", h.PID, h.Task, h.CPU, h.Command)
}

// pickTask is the task of a vm or files command: pid's, or with a
// negative pid the panicking task (as bt picks it).
func (t *Triage) pickTask(pid int) (*kernel.Task, error) {
	k := t.K
	if pid >= 0 {
		for _, task := range k.Tasks {
			if int(task.PID) == pid {
				return task, nil
			}
		}
		return nil, fmt.Errorf("no task with pid %d", pid)
	}
	for _, task := range k.Tasks {
		if task.Panic {
			return task, nil
		}
	}
	if len(k.Tasks) == 0 {
		return nil, fmt.Errorf("no tasks in the model")
	}
	return k.Tasks[0], nil
}

func header(task *kernel.Task) TaskHeader {
	h := TaskHeader{PID: task.PID, Task: fmt.Sprintf("%x", task.Addr), CPU: task.CPU, Command: task.Comm}
	if task.OnCPU != nil {
		h.CPU = task.OnCPU.ID
	}
	return h
}

// VMEntry is one mapping of `vm`.
type VMEntry struct {
	VMA   string `json:"vma"`
	Start string `json:"start"`
	End   string `json:"end"`
	Flags string `json:"flags"`
	Perms string `json:"perms"`
	PgOff uint64 `json:"pgoff"`
	File  string `json:"file,omitempty"` // struct file
	// Name is the file's path, or /proc/PID/maps's name of an anonymous
	// mapping ([heap], [stack], [vdso], [vvar]).
	Name    string `json:"name,omitempty"`
	NameErr string `json:"name_unreadable,omitempty"`
}

// VMResult is `vm`: a task's mm and its mappings, as crash's vm.
type VMResult struct {
	TaskHeader
	MM        string    `json:"mm"`
	PGD       string    `json:"pgd"`
	RSSKB     uint64    `json:"rss_kb"`
	TotalVMKB uint64    `json:"total_vm_kb"`
	VMAs      []VMEntry `json:"vmas"`
	// Incomplete says why mappings may be missing (unreadable memory,
	// entries dropped), or what of the mm could not be read.
	Incomplete string `json:"incomplete,omitempty"`
}

// VM gathers `vm`: the mappings of pid's task, or with a negative pid of
// the panicking task.
func (t *Triage) VM(pid int) (*VMResult, error) {
	task, err := t.pickTask(pid)
	if err != nil {
		return nil, err
	}
	k := t.K
	r := &VMResult{TaskHeader: header(task), MM: fmt.Sprintf("%x", task.MM), VMAs: []VMEntry{}}
	var notes []string
	if pgd, err := k.PGD(task); err != nil {
		notes = append(notes, err.Error())
	} else {
		r.PGD = fmt.Sprintf("%x", pgd)
	}
	kb := k.Dump.PageSize() / 1024
	if m, err := k.TaskMemory(task); err != nil {
		notes = append(notes, fmt.Sprintf("rss: %v", err))
	} else {
		r.RSSKB, r.TotalVMKB = m.RSS*kb, m.VSZ*kb
	}
	// What could not be read is said with what could: the mm, pgd and
	// RSS are still worth seeing when the mappings are not.
	vmas, err := k.VMAs(task)
	if err != nil {
		notes = append(notes, err.Error())
	}
	for _, v := range vmas {
		e := VMEntry{VMA: fmt.Sprintf("%x", v.Addr), Start: fmt.Sprintf("%x", v.Start), End: fmt.Sprintf("%x", v.End),
			Flags: fmt.Sprintf("%x", v.Flags), Perms: v.Perms(), PgOff: v.PgOff, Name: v.Name, NameErr: v.NameErr}
		if v.File != 0 {
			e.File = fmt.Sprintf("%x", v.File)
		}
		r.VMAs = append(r.VMAs, e)
	}
	for i, n := range notes {
		if i > 0 {
			r.Incomplete += "; "
		}
		r.Incomplete += n
	}
	return r, nil
}

// text prints the mappings as crash's vm does (its FILE column also
// names [heap], [stack], [vdso] and special mappings, as /proc/PID/maps).
func (r *VMResult) text(w io.Writer) error {
	r.TaskHeader.text(w)
	fmt.Fprintf(w, "%16s  %16s  %8s  %8s\n", "MM", "PGD", "RSS", "TOTAL_VM")
	fmt.Fprintf(w, "%16s  %16s  %7dk  %7dk\n", r.MM, r.PGD, r.RSSKB, r.TotalVMKB)
	if r.MM == "0" {
		return nil
	}
	fmt.Fprintf(w, "%16s  %16s %16s %8s %s\n", "VMA", "START", "END", "FLAGS", "FILE")
	for _, v := range r.VMAs {
		name := v.Name
		if v.NameErr != "" {
			name += " (path unreadable: " + v.NameErr + ")"
		}
		fmt.Fprintf(w, "%16s  %16s %16s %8s %s\n", v.VMA, v.Start, v.End, v.Flags, name)
	}
	if r.Incomplete != "" {
		fmt.Fprintf(w, "note: %s\n", r.Incomplete)
	}
	return nil
}

// FileEntry is one open descriptor of `files`.
type FileEntry struct {
	FD     int    `json:"fd"`
	File   string `json:"file"`
	Dentry string `json:"dentry"`
	Inode  string `json:"inode"`
	Type   string `json:"type"`
	Path   string `json:"path"`
	Err    string `json:"unreadable,omitempty"`
}

// FilesResult is `files`: a task's root, cwd and open files, as crash's
// files.
type FilesResult struct {
	TaskHeader
	Root       string      `json:"root"`
	Cwd        string      `json:"cwd"`
	RootErr    string      `json:"root_unreadable,omitempty"`
	CwdErr     string      `json:"cwd_unreadable,omitempty"`
	Files      []FileEntry `json:"files"`
	Incomplete string      `json:"incomplete,omitempty"`
}

// Files gathers `files`: the open files of pid's task, or with a
// negative pid of the panicking task.
func (t *Triage) Files(pid int) (*FilesResult, error) {
	task, err := t.pickTask(pid)
	if err != nil {
		return nil, err
	}
	ft, err := t.K.Files(task)
	if ft == nil {
		return nil, err
	}
	r := &FilesResult{TaskHeader: header(task), Root: ft.Root, Cwd: ft.Cwd, RootErr: ft.RootErr, CwdErr: ft.CwdErr, Files: []FileEntry{}}
	if err != nil {
		r.Incomplete = err.Error()
	}
	for _, f := range ft.Files {
		r.Files = append(r.Files, FileEntry{FD: f.FD, File: fmt.Sprintf("%x", f.File), Dentry: fmt.Sprintf("%x", f.Dentry),
			Inode: fmt.Sprintf("%x", f.Inode), Type: kernel.FileType(f.Mode), Path: f.Path, Err: f.Err})
	}
	return r, nil
}

// text prints the table as crash's files does.
func (r *FilesResult) text(w io.Writer) error {
	r.TaskHeader.text(w)
	root, cwd := r.Root, r.Cwd
	if r.RootErr != "" {
		root = "(unreadable: " + r.RootErr + ")"
	}
	if r.CwdErr != "" {
		cwd = "(unreadable: " + r.CwdErr + ")"
	}
	fmt.Fprintf(w, "ROOT: %s    CWD: %s\n", root, cwd)
	if len(r.Files) == 0 && r.Incomplete == "" {
		fmt.Fprintln(w, "No open files")
		return nil
	}
	fmt.Fprintf(w, "%3s  %16s  %16s  %16s  %-4s %s\n", "FD", "FILE", "DENTRY", "INODE", "TYPE", "PATH")
	for _, f := range r.Files {
		path := f.Path
		if f.Err != "" {
			path += " (" + f.Err + ")"
		}
		fmt.Fprintf(w, "%3d  %16s  %16s  %16s  %-4s %s\n", f.FD, f.File, f.Dentry, f.Inode, f.Type, path)
	}
	if r.Incomplete != "" {
		fmt.Fprintf(w, "note: %s\n", r.Incomplete)
	}
	return nil
}

// pidOperand parses vm's and files' optional PID; -1 without one.
func pidOperand(cmd string, args []string) (int, error) {
	switch len(args) {
	case 0:
		return -1, nil
	case 1:
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: %s [PID]: %q is not a pid", ErrUsage, cmd, args[0])
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: %s [PID]", ErrUsage, cmd)
}
