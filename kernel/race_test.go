package kernel

import (
	"sync"
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// Several gdb sessions use one model at once: the lazily built parts
// (modules, unwinder, log) and the warnings they add while others read
// them must be safe together (go test -race). A module's struct module is
// excluded from the dump so that the lazy module walk has something to
// warn about.
func TestConcurrentUse(t *testing.T) {
	set := fixtures.Set{Name: "6.1", Dir: fixtures.Dir(t)}
	full := loadIn(t, set, "oom/vmcore.lzo")
	mods, err := full.Modules()
	if err != nil || len(mods) == 0 {
		t.Fatalf("modules: %d, %v", len(mods), err)
	}
	tr, err := full.VM.Translate(mods[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	path := fixtures.ExcludePages(t, set.Path(t, "oom", "vmcore.lzo"), []uint64{tr.Phys / full.Dump.PageSize()})
	k := loadPaths(t, set, path)
	before := len(k.Warnings())
	var wg sync.WaitGroup
	done := make(chan struct{})
	for g := 0; g < 2; g++ { // triage reading the notes meanwhile
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
					_ = k.Warnings()
				}
			}
		}()
	}
	var work sync.WaitGroup
	for g := 0; g < 2; g++ {
		work.Add(1)
		go func(g int) {
			defer work.Done()
			k.Modules()
			for i, task := range k.Tasks {
				if (i+g)%2 == 0 {
					k.Backtrace(task)
					k.TaskMemory(task)
				}
			}
			if _, err := k.Log(); err != nil {
				t.Error(err)
			}
		}(g)
	}
	work.Wait()
	close(done)
	wg.Wait()
	if len(k.Warnings()) <= before {
		t.Errorf("the excluded struct module was not reported: %q", k.Warnings())
	}
}
