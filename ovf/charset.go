package ovf

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// charsetState remembers how the bytes of a descriptor were brought to
// UTF-8 before parsing, so that the encoding named in the XML prolog can be
// checked against it.
type charsetState struct {
	// fromUTF16 is set when a UTF-16 byte order mark (or UTF-16 '<?') was
	// found and the bytes were transcoded.
	fromUTF16 bool
	// validUTF8 tells whether the original bytes are valid UTF-8.
	validUTF8 bool
	warnings  []string
}

// unsupportedEncoding is returned through encoding/xml's CharsetReader.
type unsupportedEncoding struct{ msg string }

func (e *unsupportedEncoding) Error() string { return e.msg }

// toUTF8 removes a UTF-8 byte order mark and transcodes UTF-16 input
// (recognised by its byte order mark or by a UTF-16 encoded '<?').
func toUTF8(data []byte) ([]byte, *charsetState, error) {
	cs := &charsetState{}
	switch {
	case bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}):
		data = data[3:]
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}):
		return decodeUTF16(data[2:], false, cs)
	case bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		return decodeUTF16(data[2:], true, cs)
	case bytes.HasPrefix(data, []byte{'<', 0, '?', 0}):
		return decodeUTF16(data, false, cs)
	case bytes.HasPrefix(data, []byte{0, '<', 0, '?'}):
		return decodeUTF16(data, true, cs)
	}
	cs.validUTF8 = utf8.Valid(data)
	return data, cs, nil
}

func decodeUTF16(data []byte, bigEndian bool, cs *charsetState) ([]byte, *charsetState, error) {
	if len(data)%2 != 0 {
		return nil, nil, invalidf(0, "descriptor is UTF-16 but has an odd number of bytes")
	}
	units := make([]uint16, len(data)/2)
	for i := range units {
		if bigEndian {
			units[i] = uint16(data[2*i])<<8 | uint16(data[2*i+1])
		} else {
			units[i] = uint16(data[2*i+1])<<8 | uint16(data[2*i])
		}
	}
	var b strings.Builder
	b.Grow(len(units))
	for i := 0; i < len(units); i++ {
		u := units[i]
		switch {
		case utf16.IsSurrogate(rune(u)):
			if i+1 >= len(units) {
				return nil, nil, invalidf(0, "descriptor is invalid UTF-16 (unpaired surrogate)")
			}
			r := utf16.DecodeRune(rune(u), rune(units[i+1]))
			if r == utf8.RuneError {
				return nil, nil, invalidf(0, "descriptor is invalid UTF-16 (unpaired surrogate)")
			}
			b.WriteRune(r)
			i++
		default:
			b.WriteRune(rune(u))
		}
	}
	cs.fromUTF16 = true
	cs.validUTF8 = true
	return []byte(b.String()), cs, nil
}

// reader is the CharsetReader given to encoding/xml. It is only called for
// encodings other than UTF-8.
func (cs *charsetState) reader(label string, input io.Reader) (io.Reader, error) {
	name := strings.ToLower(strings.TrimSpace(label))
	switch name {
	case "utf-8", "utf8", "us-ascii", "ascii", "iso646-us":
		return input, nil
	case "utf-16", "utf-16le", "utf-16be", "ucs-2", "unicode", "iso-10646-ucs-2":
		if cs.fromUTF16 {
			return input, nil
		}
		if cs.validUTF8 {
			cs.warnings = append(cs.warnings, fmt.Sprintf("descriptor declares encoding %q but its bytes are UTF-8; read as UTF-8", label))
			return input, nil
		}
		return nil, &unsupportedEncoding{fmt.Sprintf("descriptor declares encoding %q but has no UTF-16 byte order mark and is not UTF-8", label)}
	}
	if cs.fromUTF16 {
		return nil, &unsupportedEncoding{fmt.Sprintf("descriptor declares encoding %q but starts with a UTF-16 byte order mark", label)}
	}
	switch name {
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "cp819", "ibm819", "iso-ir-100", "csisolatin1":
		return transcode(input, nil)
	case "windows-1252", "cp1252", "x-cp1252":
		return transcode(input, &cp1252)
	}
	return nil, &unsupportedEncoding{fmt.Sprintf("descriptor declares encoding %q, which is not supported (use UTF-8, UTF-16, ISO-8859-1 or windows-1252)", label)}
}

// transcode converts a single-byte encoding to UTF-8. high maps bytes
// 0x80-0x9F; nil means ISO-8859-1, where every byte is its own code point.
func transcode(input io.Reader, high *[32]rune) (io.Reader, error) {
	data, err := io.ReadAll(input)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.Grow(len(data) * 2)
	for _, c := range data {
		switch {
		case c < 0x80:
			b.WriteByte(c)
		case c < 0xA0 && high != nil:
			r := high[c-0x80]
			if r == 0 {
				return nil, &unsupportedEncoding{fmt.Sprintf("byte 0x%02X is undefined in windows-1252", c)}
			}
			b.WriteRune(r)
		default:
			b.WriteRune(rune(c))
		}
	}
	return strings.NewReader(b.String()), nil
}

// cp1252 maps windows-1252 bytes 0x80-0x9F; zero marks undefined bytes.
var cp1252 = [32]rune{
	0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
	0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
}
