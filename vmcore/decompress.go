package vmcore

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"sync"

	lzo "github.com/anchore/go-lzo"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
)

// Page compression flags of struct page_desc (makedumpfile diskdump_mod.h).
// The same values, in disk_dump_header.status, say which method the dump
// tool was asked to use.
const (
	DUMP_DH_COMPRESSED_ZLIB       = 0x1
	DUMP_DH_COMPRESSED_LZO        = 0x2
	DUMP_DH_COMPRESSED_SNAPPY     = 0x4
	DUMP_DH_COMPRESSED_INCOMPLETE = 0x8
	DUMP_DH_EXCLUDED_VMEMMAP      = 0x10
	DUMP_DH_COMPRESSED_ZSTD       = 0x20
)

// Compression is a page encoding in a kdump file.
type Compression uint32

const (
	CompressionNone   Compression = 0
	CompressionZlib   Compression = DUMP_DH_COMPRESSED_ZLIB
	CompressionLZO    Compression = DUMP_DH_COMPRESSED_LZO
	CompressionSnappy Compression = DUMP_DH_COMPRESSED_SNAPPY
	CompressionZstd   Compression = DUMP_DH_COMPRESSED_ZSTD
)

func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionZlib:
		return "zlib"
	case CompressionLZO:
		return "lzo"
	case CompressionSnappy:
		return "snappy"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("unknown(0x%x)", uint32(c))
}

// compressionOf picks the method from a descriptor's flags. makedumpfile
// sets exactly one bit; a descriptor with several is damaged.
func compressionOf(flags uint32) (Compression, error) {
	switch f := flags & (DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD); f {
	case 0, DUMP_DH_COMPRESSED_ZLIB, DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_SNAPPY, DUMP_DH_COMPRESSED_ZSTD:
		return Compression(f), nil
	default:
		return 0, fmt.Errorf("page flags 0x%x name several compression methods", flags)
	}
}

type zlibState struct {
	br bytes.Reader
	zr io.ReadCloser
}

var zlibPool sync.Pool

var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	// One page per frame: bound the window and memory so a hostile frame
	// header cannot make us allocate much.
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(1<<20),
		zstd.WithDecoderMaxWindow(1<<20))
})

var errSize = errors.New("decompressed size is not the page size")

// decompressPage decodes src into dst, which must be exactly one page;
// any other outcome is an error (makedumpfile compresses each page alone).
func decompressPage(c Compression, src, dst []byte) error {
	switch c {
	case CompressionNone:
		if len(src) != len(dst) {
			return fmt.Errorf("raw page of %d bytes, page size is %d", len(src), len(dst))
		}
		copy(dst, src)
		return nil
	case CompressionZlib:
		st, _ := zlibPool.Get().(*zlibState)
		if st == nil {
			st = &zlibState{}
		}
		defer zlibPool.Put(st)
		st.br.Reset(src)
		if st.zr == nil {
			zr, err := zlib.NewReader(&st.br)
			if err != nil {
				return fmt.Errorf("zlib: %w", err)
			}
			st.zr = zr
		} else if err := st.zr.(zlib.Resetter).Reset(&st.br, nil); err != nil {
			return fmt.Errorf("zlib: %w", err)
		}
		n, err := io.ReadFull(st.zr, dst)
		if err != nil {
			return fmt.Errorf("zlib: after %d bytes: %w", n, err)
		}
		// The stream must end exactly here (checksum verified at EOF).
		var one [1]byte
		if m, err := st.zr.Read(one[:]); m != 0 || err != io.EOF {
			if err != nil && err != io.EOF {
				return fmt.Errorf("zlib: %w", err)
			}
			return errSize
		}
		return nil
	case CompressionLZO:
		n, err := lzo.Decompress(src, dst)
		if err != nil {
			return err
		}
		if n != len(dst) {
			return errSize
		}
		return nil
	case CompressionSnappy:
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return fmt.Errorf("snappy: %w", err)
		}
		if n != len(dst) {
			return errSize
		}
		out, err := snappy.Decode(dst, src)
		if err != nil {
			return fmt.Errorf("snappy: %w", err)
		}
		if &out[0] != &dst[0] {
			copy(dst, out)
		}
		return nil
	case CompressionZstd:
		dec, err := zstdDecoder()
		if err != nil {
			return err
		}
		out, err := dec.DecodeAll(src, dst[:0])
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		if len(out) != len(dst) {
			return errSize
		}
		if &out[0] != &dst[0] {
			copy(dst, out)
		}
		return nil
	}
	return fmt.Errorf("unknown compression %v", c)
}
