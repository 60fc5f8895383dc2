package ovf

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// ParseByteUnits parses a DMTF programmatic unit for bytes, such as
// "byte", "byte * 2^20", "byte*2^30", "byte * 4 * 2^10" or "byte * 1000",
// and the common aliases "KiloBytes", "MegaBytes" and "GigaBytes", and
// returns the number of bytes in one unit. It rejects everything else,
// including trailing operators, spaces around '^' and grouped digits.
func ParseByteUnits(s string) (int64, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "byte", "bytes":
		return 1, nil
	case "kilobytes", "kilobyte", "kb", "kib":
		return 1 << 10, nil
	case "megabytes", "megabyte", "mb", "mib":
		return 1 << 20, nil
	case "gigabytes", "gigabyte", "gb", "gib":
		return 1 << 30, nil
	case "terabytes", "terabyte", "tb", "tib":
		return 1 << 40, nil
	}
	parts := strings.Split(s, "*")
	if !strings.EqualFold(strings.TrimSpace(parts[0]), "byte") {
		return 0, fmt.Errorf("unit %q is not a byte unit", s)
	}
	mult := int64(1)
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		f, err := unitFactor(p)
		if err != nil {
			return 0, fmt.Errorf("unit %q: %w", s, err)
		}
		mult, err = mulChecked(mult, f)
		if err != nil {
			return 0, fmt.Errorf("unit %q: %w", s, err)
		}
	}
	return mult, nil
}

// unitFactor parses one factor of a programmatic unit: N or B^E with B 2
// or 10.
func unitFactor(p string) (int64, error) {
	if p == "" {
		return 0, fmt.Errorf("empty factor")
	}
	if base, exp, ok := strings.Cut(p, "^"); ok {
		if base != "2" && base != "10" {
			return 0, fmt.Errorf("factor %q: base must be 2 or 10", p)
		}
		e, err := strconv.Atoi(exp)
		if err != nil || e < 0 || exp != strconv.Itoa(e) {
			return 0, fmt.Errorf("factor %q: bad exponent", p)
		}
		b := int64(2)
		if base == "10" {
			b = 10
		}
		v := int64(1)
		for range e {
			if v, err = mulChecked(v, b); err != nil {
				return 0, err
			}
		}
		return v, nil
	}
	v, err := strconv.ParseInt(p, 10, 64)
	if err != nil || v <= 0 || p != strconv.FormatInt(v, 10) {
		return 0, fmt.Errorf("factor %q is not a positive integer", p)
	}
	return v, nil
}

// mulChecked multiplies two non-negative numbers, failing on overflow.
func mulChecked(a, b int64) (int64, error) {
	if a < 0 || b < 0 {
		return 0, fmt.Errorf("negative value")
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > 1<<63-1 {
		return 0, fmt.Errorf("%d × %d overflows 64 bits", a, b)
	}
	return int64(lo), nil
}

// addChecked adds two non-negative numbers, failing on overflow.
func addChecked(a, b int64) (int64, error) {
	s := a + b
	if s < a || s < b {
		return 0, fmt.Errorf("%d + %d overflows 64 bits", a, b)
	}
	return s, nil
}

// parseUint parses a non-negative decimal integer attribute or field.
func parseUint(s string) (int64, error) {
	s = strings.TrimSpace(s)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", s)
	}
	return v, nil
}
