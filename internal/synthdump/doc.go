// Package synthdump writes synthetic dump files for tests and benchmarks
// that real fixtures cannot cover, such as a kdump file describing a
// terabyte of RAM with almost nothing in it.
package synthdump

import (
	"encoding/binary"
	"os"
)

// WriteSparseKdump writes a makedumpfile-style kdump file whose max_mapnr
// covers ramBytes of RAM but holds only four raw pages (pfn 0, 1, the
// middle one and the last one, each filled with its index + 1); the file
// is sparse on disk. Layout per makedumpfile's IMPLEMENTATION.
func WriteSparseKdump(path string, ramBytes uint64) error {
	const bs = 4096
	maxMapnr := ramBytes / bs
	perBitmap := (maxMapnr/8 + bs - 1) / bs * bs
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	le := binary.LittleEndian
	hdr := make([]byte, 2*bs)
	copy(hdr, "KDUMP   ")
	le.PutUint32(hdr[8:], 6)                        // header_version
	le.PutUint32(hdr[428:], bs)                     // block_size
	le.PutUint32(hdr[432:], 1)                      // sub_hdr_size
	le.PutUint32(hdr[436:], uint32(2*perBitmap/bs)) // bitmap_blocks
	le.PutUint32(hdr[440:], uint32(maxMapnr))       // max_mapnr (32-bit copy)
	le.PutUint32(hdr[460:], 1)                      // nr_cpus
	le.PutUint32(hdr[bs+8:], 31)                    // dump_level
	le.PutUint64(hdr[bs+96:], maxMapnr)             // max_mapnr_64
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return err
	}
	bitmapOff := int64(2 * bs)
	present := []uint64{0, 1, maxMapnr / 2, maxMapnr - 1}
	for _, p := range present {
		for _, half := range []int64{0, int64(perBitmap)} {
			var b [1]byte
			f.ReadAt(b[:], bitmapOff+half+int64(p/8))
			b[0] |= 1 << (p % 8)
			if _, err := f.WriteAt(b[:], bitmapOff+half+int64(p/8)); err != nil {
				return err
			}
		}
	}
	descOff := bitmapOff + 2*int64(perBitmap)
	dataOff := descOff + int64(len(present))*24
	for i := range present {
		d := make([]byte, 24)
		le.PutUint64(d, uint64(dataOff+int64(i)*bs))
		le.PutUint32(d[8:], bs)
		if _, err := f.WriteAt(d, descOff+int64(i)*24); err != nil {
			return err
		}
		page := make([]byte, bs)
		page[0] = byte(i + 1)
		if _, err := f.WriteAt(page, dataOff+int64(i)*bs); err != nil {
			return err
		}
	}
	return nil
}
