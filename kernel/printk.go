package kernel

import (
	"errors"
	"fmt"
	"strings"
)

// LogRecord is one kernel log message.
type LogRecord struct {
	Seq    uint64
	TsNsec uint64
	Text   string
	// oldRing: from the log_buf of struct printk_log (before 5.10), whose
	// console printed a prefix for every segment of the text, an empty one
	// after a newline that ends it too.
	oldRing bool
}

// String formats the record as the console prints it, one line per line
// of text: "[    5.159539] text".
func (r LogRecord) String() string {
	return r.WithPrefix(fmt.Sprintf("[%5d.%06d] ", r.TsNsec/1e9, r.TsNsec%1e9/1e3))
}

// WithPrefix formats the record with prefix in front of each of its lines.
func (r LogRecord) WithPrefix(prefix string) string {
	return prefix + strings.Join(r.Lines(), "\n"+prefix)
}

// Lines is the record's text, line by line.
func (r LogRecord) Lines() []string {
	text := r.Text
	if !r.oldRing {
		text = strings.TrimRight(text, "\n")
	}
	return strings.Split(text, "\n")
}

// maxLogRecords bounds the walk of the log ring.
const maxLogRecords = 1 << 24

// Log reads the kernel log. The lockless ring buffer (5.10+) and the
// older log_buf are both located and laid out by VMCOREINFO, which the
// kernel wrote for exactly this purpose.
func (k *Kernel) Log() ([]LogRecord, error) {
	if _, ok := k.Info.Symbol("prb"); ok {
		return k.lockless()
	}
	if _, ok := k.Info.Symbol("log_buf"); ok {
		return k.logBuf()
	}
	return nil, errors.New("VMCOREINFO locates no kernel log (neither prb nor log_buf)")
}

type vmcoreinfoLayout struct {
	k    *Kernel
	errs []string
}

func (l *vmcoreinfoLayout) off(name string) uint64 {
	v, ok := l.k.Info.Offsets[name]
	if !ok {
		l.errs = append(l.errs, "OFFSET("+name+")")
	}
	return v
}

func (l *vmcoreinfoLayout) size(name string) uint64 {
	v, ok := l.k.Info.Sizes[name]
	if !ok {
		l.errs = append(l.errs, "SIZE("+name+")")
	}
	return v
}

func (l *vmcoreinfoLayout) err() error {
	if len(l.errs) > 0 {
		return fmt.Errorf("VMCOREINFO lacks %s", strings.Join(l.errs, ", "))
	}
	return nil
}

// lockless reads kernel/printk/printk_ringbuffer.c's structures.
func (k *Kernel) lockless() ([]LogRecord, error) {
	l := &vmcoreinfoLayout{k: k}
	prbSym, _ := k.Info.Symbol("prb")
	descRingOff := l.off("printk_ringbuffer.desc_ring")
	textRingOff := l.off("printk_ringbuffer.text_data_ring")
	countBitsOff := l.off("prb_desc_ring.count_bits")
	descsOff := l.off("prb_desc_ring.descs")
	infosOff := l.off("prb_desc_ring.infos")
	headOff := l.off("prb_desc_ring.head_id")
	tailOff := l.off("prb_desc_ring.tail_id")
	descSize := l.size("prb_desc")
	stateOff := l.off("prb_desc.state_var")
	lposOff := l.off("prb_desc.text_blk_lpos")
	beginOff := l.off("prb_data_blk_lpos.begin")
	nextOff := l.off("prb_data_blk_lpos.next")
	infoSize := l.size("printk_info")
	seqOff := l.off("printk_info.seq")
	tsOff := l.off("printk_info.ts_nsec")
	lenOff := l.off("printk_info.text_len")
	sizeBitsOff := l.off("prb_data_ring.size_bits")
	dataOff := l.off("prb_data_ring.data")
	counterOff := l.off("atomic_long_t.counter")
	if err := l.err(); err != nil {
		return nil, err
	}
	prb, err := k.ReadU64(prbSym)
	if err != nil {
		return nil, fmt.Errorf("prb: %w", err)
	}
	dr := prb + descRingOff
	countBits, err := k.readU32(dr + countBitsOff)
	if err != nil {
		return nil, fmt.Errorf("printk ring count_bits at 0x%x: %w", dr+countBitsOff, err)
	}
	if countBits > 30 {
		return nil, fmt.Errorf("printk ring count_bits %d at 0x%x: more than 30, not a real ring", countBits, dr+countBitsOff)
	}
	descs, _ := k.ReadU64(dr + descsOff)
	infos, _ := k.ReadU64(dr + infosOff)
	head, err1 := k.ReadU64(dr + headOff + counterOff)
	tail, err2 := k.ReadU64(dr + tailOff + counterOff)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("printk ring ids: %v", errors.Join(err1, err2))
	}
	tr := prb + textRingOff
	sizeBits, err := k.readU32(tr + sizeBitsOff)
	if err != nil {
		return nil, fmt.Errorf("printk text ring size_bits at 0x%x: %w", tr+sizeBitsOff, err)
	}
	if sizeBits > 31 {
		return nil, fmt.Errorf("printk text ring size_bits %d at 0x%x: more than 31, not a real ring", sizeBits, tr+sizeBitsOff)
	}
	data, _ := k.ReadU64(tr + dataOff)
	ringSize := uint64(1) << sizeBits
	text := make([]byte, ringSize)
	if err := k.Read(text, data); err != nil {
		return nil, fmt.Errorf("printk text ring at 0x%x: %w", data, err)
	}
	const (
		flagsShift = 62
		idMask     = 1<<flagsShift - 1
		committed  = 1
		finalized  = 2
	)
	count := uint64(1) << countBits
	var recs []LogRecord
	for id, n := tail&idMask, 0; ; id, n = (id+1)&idMask, n+1 {
		if n > maxLogRecords || uint64(n) > count {
			break
		}
		idx := id % count
		desc := descs + idx*descSize
		sv, err := k.ReadU64(desc + stateOff + counterOff)
		if err == nil {
			state := sv >> flagsShift
			if (state == committed || state == finalized) && sv&idMask == id {
				begin, _ := k.ReadU64(desc + lposOff + beginOff)
				next, _ := k.ReadU64(desc + lposOff + nextOff)
				info := infos + idx*infoSize
				seq, _ := k.ReadU64(info + seqOff)
				ts, _ := k.ReadU64(info + tsOff)
				tlen16, _ := k.readU32(info + lenOff)
				tlen := uint64(tlen16 & 0xffff)
				recs = append(recs, LogRecord{Seq: seq, TsNsec: ts, Text: ringText(text, begin, next, tlen)})
			}
		}
		if id == head&idMask {
			break
		}
	}
	return recs, nil
}

// ringText extracts a record's text from the data ring: the block at
// begin starts with the owner id (8 bytes); a block that would wrap is
// stored at the ring's start instead.
func ringText(ring []byte, begin, next, textLen uint64) string {
	size := uint64(len(ring))
	if begin&1 != 0 || next&1 != 0 || begin == next { // no data, or failed
		return ""
	}
	off := begin % size
	if begin/size != next/size && next%size != 0 {
		off = 0 // wrapped: the data sits at the beginning
	}
	start := off + 8
	end := start + textLen
	if start > size {
		return ""
	}
	if end > size {
		end = size
	}
	return string(ring[start:end])
}

// logBuf reads the pre-5.10 log_buf of struct printk_log records.
func (k *Kernel) logBuf() ([]LogRecord, error) {
	l := &vmcoreinfoLayout{k: k}
	hdrSize := l.size("printk_log")
	tsOff := l.off("printk_log.ts_nsec")
	lenOff := l.off("printk_log.len")
	textLenOff := l.off("printk_log.text_len")
	if err := l.err(); err != nil {
		return nil, err
	}
	sym := func(n string) uint64 { v, _ := k.Info.Symbol(n); return v }
	bufPtr, err := k.ReadU64(sym("log_buf"))
	if err != nil {
		return nil, err
	}
	bufLen, _ := k.readU32(sym("log_buf_len"))
	first, _ := k.readU32(sym("log_first_idx"))
	next, _ := k.readU32(sym("log_next_idx"))
	if bufLen == 0 || bufLen > 1<<30 {
		return nil, fmt.Errorf("log_buf_len %d", bufLen)
	}
	buf := make([]byte, bufLen)
	if err := k.Read(buf, bufPtr); err != nil {
		return nil, err
	}
	var recs []LogRecord
	idx := uint64(first)
	for n := 0; n < maxLogRecords && idx != uint64(next); n++ {
		if idx+hdrSize > uint64(bufLen) {
			break
		}
		rec := buf[idx:]
		reclen := uint64(le16(rec[lenOff:]))
		if reclen == 0 { // wrap marker
			idx = 0
			continue
		}
		tlen := uint64(le16(rec[textLenOff:]))
		if hdrSize+tlen > uint64(len(rec)) {
			break
		}
		recs = append(recs, LogRecord{Seq: uint64(n), TsNsec: le64(rec[tsOff:]), Text: string(rec[hdrSize : hdrSize+tlen]), oldRing: true})
		idx += reclen
	}
	return recs, nil
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
