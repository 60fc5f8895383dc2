package network

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"cimid/agent/errdefs"
)

// maxKeyLine bounds an OpenSSH public key line (a 16384-bit RSA key is
// about 2.8 KB).
const maxKeyLine = 8 << 10

// checkSSHKey validates one OpenSSH public key line, "TYPE BASE64
// [COMMENT]", and returns it with single spaces. The base64 blob must
// decode to a key of the type the line names.
func checkSSHKey(line string) (string, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return "", errdefs.Invalidf("key is empty: give an OpenSSH public key line such as \"ssh-ed25519 AAAA... user@host\"")
	}
	if len(line) > maxKeyLine {
		return "", errdefs.Invalidf("key is %d bytes long; an OpenSSH public key line is at most %d", len(line), maxKeyLine)
	}
	if strings.ContainsAny(line, "\r\n") {
		return "", errdefs.Invalidf("key must be one OpenSSH public key on one line")
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return "", errdefs.Invalidf("key %q is not an OpenSSH public key line \"TYPE BASE64 [COMMENT]\"", abbreviate(line))
	}
	typ := fields[0]
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return "", errdefs.Invalidf("key: the data after %s is not base64: %v", typ, err)
	}
	if err := checkKeyBlob(typ, blob); err != nil {
		return "", errdefs.Invalidf("key: %v", err)
	}
	comment := strings.Join(fields[2:], " ")
	for _, r := range comment {
		if unicode.IsControl(r) {
			return "", errdefs.Invalidf("key: the comment holds a control character")
		}
	}
	out := typ + " " + fields[1]
	if comment != "" {
		out += " " + comment
	}
	return out, nil
}

// ecdsaCurves maps the supported ECDSA key types to their curves.
var ecdsaCurves = map[string]ecdh.Curve{
	"ecdsa-sha2-nistp256": ecdh.P256(),
	"ecdsa-sha2-nistp384": ecdh.P384(),
	"ecdsa-sha2-nistp521": ecdh.P521(),
}

// checkKeyBlob checks the wire encoding of a public key (RFC 4253 6.6,
// RFC 5656 3.1, RFC 8709 4).
func checkKeyBlob(typ string, blob []byte) error {
	r := &wireReader{b: blob}
	name, err := r.str()
	if err != nil {
		return fmt.Errorf("the base64 data is not an SSH public key: %w", err)
	}
	if string(name) != typ {
		return fmt.Errorf("the line says %s but the key data is of type %q", typ, name)
	}
	switch {
	case typ == "ssh-ed25519":
		pk, err := r.str()
		if err != nil || len(pk) != 32 {
			return errors.New("the ssh-ed25519 key is not 32 bytes long")
		}
	case typ == "ssh-rsa":
		e, err1 := r.mpint()
		n, err2 := r.mpint()
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("the ssh-rsa key is malformed: %w", err)
		}
		if e.Sign() <= 0 || e.Bit(0) == 0 {
			return errors.New("the ssh-rsa key has an invalid public exponent")
		}
		if n.BitLen() < 2048 {
			return fmt.Errorf("the ssh-rsa key has %d bits; at least 2048 are required", n.BitLen())
		}
	case strings.HasPrefix(typ, "ecdsa-sha2-"):
		curve, ok := ecdsaCurves[typ]
		if !ok {
			return fmt.Errorf("key type %s is not supported (ECDSA curves: nistp256, nistp384, nistp521)", typ)
		}
		id, err := r.str()
		if err != nil || "ecdsa-sha2-"+string(id) != typ {
			return fmt.Errorf("the %s key names another curve", typ)
		}
		point, err := r.str()
		if err != nil {
			return fmt.Errorf("the %s key is malformed: %w", typ, err)
		}
		if _, err := curve.NewPublicKey(point); err != nil {
			return fmt.Errorf("the %s key is not a point on its curve", typ)
		}
	default:
		return fmt.Errorf("key type %q is not supported: use ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521", typ)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("the %s key data has %d bytes too many", typ, len(r.b))
	}
	return nil
}

// wireReader reads SSH wire format values.
type wireReader struct{ b []byte }

func (r *wireReader) str() ([]byte, error) {
	if len(r.b) < 4 {
		return nil, errors.New("truncated")
	}
	n := binary.BigEndian.Uint32(r.b)
	if uint64(n) > uint64(len(r.b)-4) {
		return nil, errors.New("truncated")
	}
	v := r.b[4 : 4+n]
	r.b = r.b[4+n:]
	return v, nil
}

func (r *wireReader) mpint() (*big.Int, error) {
	v, err := r.str()
	if err != nil {
		return nil, err
	}
	if len(v) > 0 && v[0]&0x80 != 0 {
		return nil, errors.New("negative integer")
	}
	return new(big.Int).SetBytes(v), nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

var userNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// checkUserName accepts the user names Linux distributions create.
func checkUserName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", nil
	}
	if !userNamePattern.MatchString(name) {
		return "", errdefs.Invalidf("userName %q is not a valid user name: lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters", name)
	}
	if name == "root" {
		return "", errdefs.Invalidf("userName root is refused: name an unprivileged user; it gets sudo")
	}
	return name, nil
}

// Password bounds.
const (
	minPassword = 8
	maxPassword = 256
)

// hashPassword checks a password and returns its salted SHA-512 crypt
// hash, the form /etc/shadow and cloud-init's passwd take.
func hashPassword(pw string) (string, error) {
	if len(pw) < minPassword || len(pw) > maxPassword {
		return "", errdefs.Invalidf("password must have %d to %d bytes", minPassword, maxPassword)
	}
	if strings.ContainsRune(pw, 0) {
		return "", errdefs.Invalidf("password holds a NUL character")
	}
	salt := make([]byte, 16)
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	for i, b := range raw {
		salt[i] = cryptAlphabet[int(b)%len(cryptAlphabet)]
	}
	return sha512Crypt([]byte(pw), salt, passwordRounds), nil
}

// passwordRounds is the cost of the SHA-512 crypt hashes written.
const passwordRounds = 20000

const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// sha512Crypt is the SHA-512 based crypt(3) of glibc ("$6$"), as
// specified in Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512".
func sha512Crypt(pw, salt []byte, rounds int) string {
	if len(salt) > 16 {
		salt = salt[:16]
	}
	rounds = min(max(rounds, 1000), 999999999)

	b := sha512.New()
	b.Write(pw)
	b.Write(salt)
	b.Write(pw)
	db := b.Sum(nil)

	a := sha512.New()
	a.Write(pw)
	a.Write(salt)
	i := len(pw)
	for ; i > 64; i -= 64 {
		a.Write(db)
	}
	a.Write(db[:i])
	for i := len(pw); i > 0; i >>= 1 {
		if i&1 != 0 {
			a.Write(db)
		} else {
			a.Write(pw)
		}
	}
	da := a.Sum(nil)

	dp := sha512.New()
	for range pw {
		dp.Write(pw)
	}
	p := repeatTo(dp.Sum(nil), len(pw))

	ds := sha512.New()
	for range 16 + int(da[0]) {
		ds.Write(salt)
	}
	sv := repeatTo(ds.Sum(nil), len(salt))

	c := da
	for r := 0; r < rounds; r++ {
		h := sha512.New()
		if r&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if r%3 != 0 {
			h.Write(sv)
		}
		if r%7 != 0 {
			h.Write(p)
		}
		if r&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(nil)
	}

	var out bytes.Buffer
	out.WriteString("$6$")
	if rounds != 5000 {
		out.WriteString("rounds=" + strconv.Itoa(rounds) + "$")
	}
	out.Write(salt)
	out.WriteByte('$')
	enc := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for ; n > 0; n-- {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	// The specification's byte order: (0,21,42), (22,43,1), (44,2,23), (3,24,45), ...
	for k := 0; k < 21; k++ {
		t := [3]byte{c[k], c[k+21], c[k+42]}
		r := k % 3
		enc(t[r], t[(r+1)%3], t[(r+2)%3], 4)
	}
	enc(0, 0, c[63], 2)
	return out.String()
}

func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, d[:min(len(d), n-len(out))]...)
	}
	return out
}
