package kernel

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Zone is one memory zone of one node, as /proc/zoneinfo and the
// kernel's show_mem report it (all counts in pages).
type Zone struct {
	Node    int
	Name    string
	Addr    uint64 // struct zone
	Free    uint64 // vm_stat[NR_FREE_PAGES]
	Min     uint64 // min_wmark_pages: _watermark[WMARK_MIN] + watermark_boost
	Low     uint64
	High    uint64
	Boost   uint64
	Spanned uint64
	Present uint64
	Managed uint64
	// Stats are the zone's vm_stat counters, in enum zone_stat_item order.
	Stats []ZoneStat
}

// ZoneStat is one vm_stat counter of a zone.
type ZoneStat struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

// maxZoneNodes bounds the nodes walked when nothing says how many there
// can be (MAX_NUMNODES is at most 1024 on x86_64).
const maxZoneNodes = 1024

// Zones reads every populated zone of every node.
func (k *Kernel) Zones() ([]Zone, error) {
	b := k.Types
	nodes, err := k.nodes()
	if err != nil {
		return nil, err
	}
	zonesOff, err1 := b.Offset("pglist_data", "node_zones")
	nZones, err2 := b.ArrayLen("pglist_data", "node_zones")
	zoneSize, err3 := b.Sizeof("zone")
	nameOff, err4 := b.Offset("zone", "name")
	vmStatOff, err5 := b.Offset("zone", "vm_stat")
	spannedOff, err6 := b.Offset("zone", "spanned_pages")
	presentOff, err7 := b.Offset("zone", "present_pages")
	managedOff, err8 := b.Offset("zone", "managed_pages")
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8); err != nil {
		return nil, err
	}
	// The watermarks: _watermark since 5.0, watermark before; indexed
	// by enum zone_watermarks. The boost (5.1+) is added, as
	// min_wmark_pages() does.
	wmOff, err := b.Offset("zone", "_watermark")
	if err != nil {
		if wmOff, err = b.Offset("zone", "watermark"); err != nil {
			return nil, fmt.Errorf("struct zone has neither _watermark nor watermark: %w", err)
		}
	}
	boostOff, boostErr := b.Offset("zone", "watermark_boost")
	wm := map[string]uint64{}
	for _, n := range []string{"WMARK_MIN", "WMARK_LOW", "WMARK_HIGH"} {
		v, err := b.EnumValue(n)
		if err != nil {
			return nil, fmt.Errorf("enum zone_watermarks: %w", err)
		}
		if v < 0 || v > 16 {
			return nil, fmt.Errorf("enum zone_watermarks: %s is %d, want 0 to 16", n, v)
		}
		wm[n] = uint64(v)
	}
	freeIdx, err := b.EnumValue("NR_FREE_PAGES")
	if err != nil {
		return nil, fmt.Errorf("enum zone_stat_item: %w", err)
	}
	if freeIdx < 0 || freeIdx > 1024 {
		return nil, fmt.Errorf("enum zone_stat_item: NR_FREE_PAGES is %d, want 0 to 1024", freeIdx)
	}
	items, err := b.Enum("zone_stat_item")
	if err != nil {
		return nil, err
	}
	// One counter per value: a marker enumerator sharing its value with
	// a counter's (NR_ZONE_LRU_BASE = NR_ZONE_INACTIVE_ANON) is left out,
	// and the count marker NR_VM_ZONE_STAT_ITEMS too.
	byValue := map[int64]string{}
	for name, v := range items {
		if v < 0 || v >= 1024 || name == "NR_VM_ZONE_STAT_ITEMS" {
			continue
		}
		if old, ok := byValue[v]; ok && !strings.HasSuffix(old, "_BASE") && (strings.HasSuffix(name, "_BASE") || old < name) {
			continue
		}
		byValue[v] = name
	}
	var stats []ZoneStat
	for v, name := range byValue {
		stats = append(stats, ZoneStat{name, v})
	}
	sort.Slice(stats, func(i, j int) bool { return stats[i].Value < stats[j].Value })
	if nZones == 0 || nZones > 16 {
		return nil, fmt.Errorf("pglist_data.node_zones has %d zones", nZones)
	}
	var out []Zone
	for node, pg := range nodes {
		if pg == 0 {
			continue
		}
		for i := uint64(0); i < nZones; i++ {
			za := pg + zonesOff + i*zoneSize
			z := Zone{Node: node, Addr: za}
			var errs []error
			read := func(off uint64) uint64 {
				v, err := k.ReadU64(za + off)
				errs = append(errs, err)
				return v
			}
			z.Present = read(presentOff)
			z.Spanned = read(spannedOff)
			z.Managed = read(managedOff)
			z.Free = read(vmStatOff + uint64(freeIdx)*8)
			z.Min = read(wmOff + wm["WMARK_MIN"]*8)
			z.Low = read(wmOff + wm["WMARK_LOW"]*8)
			z.High = read(wmOff + wm["WMARK_HIGH"]*8)
			if boostErr == nil {
				z.Boost = read(boostOff)
			}
			if err := errors.Join(errs...); err != nil {
				return nil, fmt.Errorf("node %d zone %d at %#x: %w", node, i, za, err)
			}
			for _, st := range stats {
				v, err := k.ReadU64(za + vmStatOff + uint64(st.Value)*8)
				if err != nil {
					return nil, fmt.Errorf("node %d zone %d vm_stat[%s]: %w", node, i, st.Name, err)
				}
				z.Stats = append(z.Stats, ZoneStat{st.Name, int64(v)})
			}
			if int64(z.Free) < 0 {
				z.Free = 0 // per-CPU drift
			}
			z.Min, z.Low, z.High = z.Min+z.Boost, z.Low+z.Boost, z.High+z.Boost
			if np, err := k.ReadU64(za + nameOff); err == nil {
				z.Name, _ = k.readCString(np, 32)
			}
			out = append(out, z)
		}
	}
	return out, nil
}

// nodes returns each node's struct pglist_data: node_data[] on NUMA
// kernels (its length from VMCOREINFO or the symbol's size), else the
// one contig_page_data.
func (k *Kernel) nodes() ([]uint64, error) {
	if a, err := k.Symbol("node_data"); err == nil {
		n := uint64(0)
		if v, ok := k.Info.Lengths["node_data"]; ok {
			n = v
		} else if k.Vmlinux != nil {
			if _, size, err := k.Vmlinux.Symbol("node_data"); err == nil {
				n = size / 8
			}
		}
		if n == 0 || n > maxZoneNodes {
			return nil, fmt.Errorf("node_data: cannot tell its length (%d)", n)
		}
		out := make([]uint64, n)
		for i := range out {
			v, err := k.ReadU64(a + uint64(i)*8)
			if err != nil {
				return nil, fmt.Errorf("node_data[%d]: %w", i, err)
			}
			out[i] = v
		}
		return out, nil
	}
	a, err := k.Symbol("contig_page_data")
	if err != nil {
		return nil, fmt.Errorf("neither node_data nor contig_page_data: %w", err)
	}
	return []uint64{a}, nil
}
