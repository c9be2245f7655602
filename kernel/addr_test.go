package kernel

import (
	"testing"

	"github.com/vmcore-gdbserver/vmcore-gdbserver/internal/fixtures"
)

// kmem ADDR on what every dump has: the panicking task's task_struct is
// an allocated object of the task_struct cache (never merged: it has a
// usercopy region) starting at the task; a word of its kernel stack lies
// in a vmalloc area (VMAP_STACK) and names the task; jiffies_64 is in the
// kernel image; a module's base is in that module; an object on a CPU's
// lockless freelist is free.
func TestLocate(t *testing.T) {
	for _, set := range fixtures.SetsWith418(t) {
		t.Run(set.Name, func(t *testing.T) {
			k := loadIn(t, set, "oom/vmcore.elf")
			task := panicTask(k)
			if task == nil {
				t.Fatal("no panicking task")
			}
			a, err := k.Locate(task.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if a.Region != "direct map" || a.Slab == nil || a.Slab.Cache.Name != "task_struct" || a.Slab.Object != task.Addr || !a.Slab.Allocated || a.Slab.Offset != 0 {
				t.Errorf("task %#x: %+v slab %+v", task.Addr, a, a.Slab)
			}
			if a, err := k.Locate(task.Addr + 100); err != nil || a.Slab == nil || a.Slab.Object != task.Addr || a.Slab.Offset != 100 {
				t.Errorf("task+100: %+v %v", a, err)
			}
			sp := task.Stack + 0x100
			a, err = k.Locate(sp)
			if err != nil {
				t.Fatal(err)
			}
			if a.Region != "vmalloc" || a.Vmalloc == nil || a.Vmalloc.Start > sp || a.Vmalloc.End <= sp || a.Stack != task {
				t.Errorf("stack %#x: %+v vmalloc %+v", sp, a, a.Vmalloc)
			}
			j, err := k.Symbol("jiffies_64")
			if err != nil {
				t.Fatal(err)
			}
			if a, err := k.Locate(j); err != nil || a.Region != "kernel image" || (a.Symbol != "jiffies_64+0x0" && a.Symbol != "jiffies+0x0") {
				t.Errorf("jiffies_64 %#x: %+v %v", j, a, err)
			}
			mods, err := k.Modules()
			if err != nil || len(mods) == 0 {
				t.Fatalf("modules: %d %v", len(mods), err)
			}
			if a, err := k.Locate(mods[0].Base); err != nil || a.Region != "module" || a.Module != mods[0].Name {
				t.Errorf("module %s base %#x: %+v %v", mods[0].Name, mods[0].Base, a, err)
			}
			if a, err := k.Locate(0x7f0000001000); err != nil || a.Region != "user" {
				t.Errorf("user address: %+v %v", a, err)
			}
			// A free object: the head of some CPU's lockless freelist.
			caches, err := k.SlabCaches()
			if err != nil {
				t.Fatal(err)
			}
			l := k.slub()
			found := 0
			for i := range caches {
				c := &caches[i]
				for cpu := range k.CPUs {
					off, err := k.perCPUOffset(cpu)
					if err != nil {
						t.Fatal(err)
					}
					head, err := k.ReadU64(c.cpuSlab + off + l.cpuFreelist)
					if err != nil || head == 0 {
						continue
					}
					a, err := k.Locate(head)
					if err != nil || a.Slab == nil || a.Slab.Allocated || a.Slab.Cache.Addr != c.Addr {
						t.Errorf("%s CPU %d freelist head %#x: %+v %v", c.Name, cpu, head, a, err)
					}
					found++
				}
			}
			if found < 5 {
				t.Errorf("only %d CPU freelists to check", found)
			}
		})
	}
}
