package gdbstub

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// MaxPacketSize is the PacketSize advertised to gdb and the largest
// packet accepted: a stack page moves in one round trip.
const MaxPacketSize = 0x20000

// Protocol errors of the framing layer.
var (
	ErrChecksum  = errors.New("bad packet checksum")
	ErrOversize  = errors.New("packet larger than PacketSize")
	ErrMalformed = errors.New("malformed packet")
)

const interrupt = 0x03

// event is what the reader saw on the wire.
type event int

const (
	evPacket event = iota
	evAck
	evNak
	evInterrupt
)

// reader splits the byte stream into packets.
type reader struct {
	r   *bufio.Reader
	buf []byte
}

func newReader(r io.Reader) *reader {
	return &reader{r: bufio.NewReaderSize(r, 1<<16)}
}

// next returns the next event; for evPacket the payload is decoded
// (escapes and run-length encoding undone). A checksum or size error is
// returned with evPacket so the caller can NAK it and go on.
func (r *reader) next() (event, []byte, error) {
	for {
		c, err := r.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		switch c {
		case '+':
			return evAck, nil, nil
		case '-':
			return evNak, nil, nil
		case interrupt:
			return evInterrupt, nil, nil
		case '$':
			return r.packet()
		}
		// Anything else between packets is noise: skip it.
	}
}

func (r *reader) packet() (event, []byte, error) {
	r.buf = r.buf[:0]
	var sum byte
	oversize := false
	for {
		c, err := r.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		if c == '#' {
			break
		}
		if c == '$' { // a new packet started: the previous one was cut short
			r.buf = r.buf[:0]
			sum = 0
			oversize = false
			continue
		}
		sum += c
		if len(r.buf) >= MaxPacketSize {
			oversize = true
			continue
		}
		r.buf = append(r.buf, c)
	}
	var cs [2]byte
	if _, err := io.ReadFull(r.r, cs[:]); err != nil {
		return 0, nil, err
	}
	want, ok := unhex2(cs[0], cs[1])
	if oversize {
		return evPacket, nil, ErrOversize
	}
	if !ok || want != sum {
		return evPacket, nil, fmt.Errorf("%w: got %q, computed %02x", ErrChecksum, cs[:], sum)
	}
	out, err := decodePayload(r.buf)
	return evPacket, out, err
}

// decodePayload undoes '}' escapes and '*' run-length encoding.
func decodePayload(in []byte) ([]byte, error) {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch c {
		case '}':
			i++
			if i >= len(in) {
				return nil, fmt.Errorf("%w: escape at the end", ErrMalformed)
			}
			out = append(out, in[i]^0x20)
		case '*':
			i++
			if i >= len(in) || len(out) == 0 {
				return nil, fmt.Errorf("%w: run-length without a character", ErrMalformed)
			}
			n := int(in[i]) - 29
			if n < 0 || len(out)+n > MaxPacketSize {
				return nil, fmt.Errorf("%w: run length %d", ErrMalformed, n)
			}
			last := out[len(out)-1]
			for ; n > 0; n-- {
				out = append(out, last)
			}
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

func unhex1(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex1(a)
	y, ok2 := unhex1(b)
	return x<<4 | y, ok1 && ok2
}

// frame wraps payload as $payload#cs, escaping the characters RSP
// reserves (binary data in qXfer and x replies may contain them).
func frame(dst, payload []byte) []byte {
	dst = append(dst, '$')
	var sum byte
	for _, c := range payload {
		if c == '$' || c == '#' || c == '}' || c == '*' {
			dst = append(dst, '}')
			sum += '}'
			c ^= 0x20
		}
		dst = append(dst, c)
		sum += c
	}
	const hexdigits = "0123456789abcdef"
	return append(dst, '#', hexdigits[sum>>4], hexdigits[sum&15])
}
