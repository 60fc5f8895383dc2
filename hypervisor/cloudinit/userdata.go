package cloudinit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// When a seed has both a credential (a user name or keys) and user data,
// its user-data file is a MIME multipart document, the format cloud-init
// documents for user data of several kinds: the user's data comes first,
// as one part or as the parts of its own MIME document, and the
// credential's #cloud-config last, with a Merge-Type header so that
// cloud-init merges it into the user's own cloud-config instead of either
// replacing the other.

// MaxExpandedUserData bounds gzip'd user data once decompressed: combined
// with a credential it is written out decompressed.
const MaxExpandedUserData = 1 << 20

// MergeType is how the credential's cloud-config merges into the
// cloud-config of the parts before it: lists (users, ssh_authorized_keys,
// runcmd...) are appended to, maps merged key by key, and where both set
// the same scalar (hostname...) the user's value stays.
const MergeType = "list(append)+dict(no_replace,recurse_list)+str()"

// credentialFile names the credential's part, as cloud-init logs it.
const credentialFile = "cimid-credential.cfg"

// userFile names the part of user data that is not a MIME document; a
// script part is saved under this name before cloud-init runs it.
const userFile = "user-data"

// startTypes are the content types cloud-init tells from how user data
// begins (after leading white space, in any case), longest prefix first
// as cloud-init tries them.
var startTypes = []struct{ prefix, contentType string }{
	{"#cloud-config-archive", "text/cloud-config-archive"},
	{"#cloud-config-jsonp", "text/cloud-config-jsonp"},
	{"## template: jinja", "text/jinja2"},
	{"#cloud-boothook", "text/cloud-boothook"},
	{"#include-once", "text/x-include-once-url"},
	{"#part-handler", "text/part-handler"},
	{"#cloud-config", "text/cloud-config"},
	{"#include", "text/x-include-url"},
	{"#!", "text/x-shellscript"},
}

// ContentType returns the MIME type cloud-init gives user data that is
// not a MIME document, from the way it begins: "text/x-shellscript" for
// "#!", "text/cloud-config" for "#cloud-config" and so on. It returns
// "text/plain" for data cloud-init does not recognise, which it ignores.
// Bytes that are not UTF-8 take no part in the test, as in cloud-init.
func ContentType(data []byte) string {
	head := strings.TrimLeftFunc(string(data), unicode.IsSpace)
	head = strings.ToLower(head[:min(len(head), 32)])
	for _, t := range startTypes {
		if strings.HasPrefix(head, t.prefix) {
			return t.contentType
		}
	}
	return "text/plain"
}

// CheckUserData tells whether user data can go into a seed: gzip'd data
// must decompress to at most MaxExpandedUserData bytes, and a MIME
// document must be readable, as the parts of a multipart document are
// carried over when the seed combines them with a credential. An error
// completes a sentence whose subject is the user data ("userData %v").
func CheckUserData(data []byte) error {
	_, err := userParts(data)
	return err
}

// part is one body part of a multipart document: its header fields in
// the order written and its body as it goes on the wire (encoded).
type part struct {
	header [][2]string
	body   []byte
}

// listsUsers tells whether the part is cloud-config that sets the
// top-level key users. Block-style YAML, which cloud-config is written
// in, puts top-level keys at the start of a line.
func (p part) listsUsers() bool {
	var ctype, encoding string
	for _, f := range p.header {
		switch textproto.CanonicalMIMEHeaderKey(f[0]) {
		case "Content-Type":
			ctype = f[1]
		case "Content-Transfer-Encoding":
			encoding = strings.ToLower(strings.TrimSpace(f[1]))
		}
	}
	if mediaType, _, err := mime.ParseMediaType(ctype); err != nil || mediaType != "text/cloud-config" {
		return false
	}
	body := p.body
	switch encoding {
	case "base64":
		decoded, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, newlineless(body)))
		if err != nil {
			return false
		}
		body = decoded
	case "quoted-printable":
		decoded, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return false
		}
		body = decoded
	}
	return setsUsers(string(body))
}

// setsUsers tells whether a cloud-config document sets the top-level key
// users: written in block-style YAML, where top-level keys start a line
// (bare or quoted), or as a JSON object, which YAML reads too.
func setsUsers(doc string) bool {
	if rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "#cloud-config")); strings.HasPrefix(rest, "{") {
		var keys map[string]json.RawMessage
		if json.Unmarshal([]byte(rest), &keys) == nil {
			_, ok := keys["users"]
			return ok
		}
	}
	for _, line := range strings.Split(doc, "\n") {
		for _, key := range []string{"users", `"users"`, "'users'"} {
			if rest, ok := strings.CutPrefix(line, key); ok && strings.HasPrefix(strings.TrimLeft(rest, " \t"), ":") {
				return true
			}
		}
	}
	return false
}

// newlineless reads data without its line breaks.
func newlineless(data []byte) io.Reader {
	return strings.NewReader(strings.NewReplacer("\r", "", "\n", "").Replace(string(data)))
}

// userParts turns user data into the parts it contributes to a multipart
// document: the parts of a MIME document, or the data as one part typed
// as cloud-init would type it.
func userParts(data []byte) ([]part, error) {
	data, err := expand(data)
	if err != nil {
		return nil, err
	}
	header, body, isMIME, err := mimeMessage(data)
	if err != nil {
		return nil, err
	}
	if !isMIME {
		return []part{newPart(ContentType(data), userFile, data, nil)}, nil
	}
	return mimeParts(header, body)
}

// expand decompresses gzip'd user data, as cloud-init does before it
// reads it.
func expand(data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("is gzip'd but does not decompress: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, MaxExpandedUserData+1))
	if err != nil {
		return nil, fmt.Errorf("is gzip'd but does not decompress: %w", err)
	}
	if len(out) > MaxExpandedUserData {
		return nil, fmt.Errorf("decompresses to more than %d bytes, the limit", MaxExpandedUserData)
	}
	return out, nil
}

// mimeMessage splits data into a MIME header and body when cloud-init
// reads it as a MIME message: "MIME-Version:" (in any case) within its
// first 4096 bytes; cloud-init then decodes the whole as UTF-8. Data whose
// header does not parse, or names no MIME-Version, is read by cloud-init's
// lenient parser as one text part, and so it is here.
func mimeMessage(data []byte) (textproto.MIMEHeader, []byte, bool, error) {
	if !bytes.Contains(bytes.ToLower(data[:min(len(data), 4096)]), []byte("mime-version:")) {
		return nil, nil, false, nil
	}
	if !utf8.Valid(data) {
		return nil, nil, false, fmt.Errorf("is a MIME document but not UTF-8, which cloud-init requires of MIME user data")
	}
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(data)))
	if err != nil || msg.Header.Get("Mime-Version") == "" {
		return nil, nil, false, nil
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		return nil, nil, false, fmt.Errorf("is a MIME document that cannot be read: %w", err)
	}
	return textproto.MIMEHeader(msg.Header), body, true, nil
}

// mimeParts returns the parts of a MIME message as they are: the body
// parts of a multipart document, or the message itself as one part.
func mimeParts(header textproto.MIMEHeader, body []byte) ([]part, error) {
	ctype := header.Get("Content-Type")
	if ctype == "" {
		return []part{{header: fields(header, "Mime-Version"), body: body}}, nil
	}
	mediaType, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		return nil, fmt.Errorf("is a MIME document whose Content-Type %q does not parse: %w", ctype, err)
	}
	if !strings.HasPrefix(mediaType, "multipart/") {
		return []part{{header: fields(header, "Mime-Version"), body: body}}, nil
	}
	boundary := params["boundary"]
	if boundary == "" {
		return nil, fmt.Errorf("is a MIME %s document without a boundary", mediaType)
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	var parts []part
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("is a MIME %s document whose part %d cannot be read: %w", mediaType, len(parts)+1, err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("is a MIME %s document whose part %d cannot be read: %w", mediaType, len(parts)+1, err)
		}
		parts = append(parts, part{header: fields(p.Header), body: b})
	}
}

// fields lists the fields of a header, except those named in skip, in a
// fixed order: Content-Type first, then by name.
func fields(h textproto.MIMEHeader, skip ...string) [][2]string {
	keys := make([]string, 0, len(h))
	for k := range h {
		skipped := false
		for _, s := range skip {
			skipped = skipped || textproto.CanonicalMIMEHeaderKey(s) == k
		}
		if !skipped {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == "Content-Type") != (keys[j] == "Content-Type") {
			return keys[i] == "Content-Type"
		}
		return keys[i] < keys[j]
	})
	var out [][2]string
	for _, k := range keys {
		for _, v := range h[k] {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}

// newPart makes a part of content type ctype holding data. ASCII text
// goes as it is, anything else in base64: cloud-init reads the document as
// text and takes the bytes of an 8bit part back as Latin-1, which garbles
// UTF-8.
func newPart(ctype, filename string, data []byte, extra [][2]string) part {
	enc := "7bit"
	for _, c := range data {
		if c >= 0x80 || c == 0 {
			enc = "base64"
			break
		}
	}
	if strings.HasPrefix(ctype, "text/") && utf8.Valid(data) {
		ctype += `; charset="utf-8"`
	}
	p := part{header: [][2]string{
		{"Content-Type", ctype},
		{"Content-Transfer-Encoding", enc},
		{"Content-Disposition", "attachment; filename=" + strconv.Quote(filename)},
	}, body: data}
	p.header = append(p.header, extra...)
	if enc == "base64" {
		p.body = base64Lines(data)
	}
	return p
}

// base64Lines encodes data in base64 lines of 76 characters.
func base64Lines(data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	return b.Bytes()
}

// multipartDocument writes parts as a multipart/mixed MIME document. The
// boundary derives from the content, so the same parts give the same
// bytes. A part's body is followed by a line end that belongs to the
// delimiter after it, which keeps each body exactly as it was.
func multipartDocument(parts []part) []byte {
	boundary := boundaryFor(parts)
	var b bytes.Buffer
	b.WriteString(`Content-Type: multipart/mixed; boundary="` + boundary + "\"\n")
	b.WriteString("MIME-Version: 1.0\n\n")
	for _, p := range parts {
		b.WriteString("--" + boundary + "\n")
		for _, f := range p.header {
			b.WriteString(f[0] + ": " + f[1] + "\n")
		}
		b.WriteString("\n")
		b.Write(p.body)
		b.WriteString("\n")
	}
	b.WriteString("--" + boundary + "--\n")
	return b.Bytes()
}

// boundaryFor derives a boundary from the parts' content that none of
// their bodies contains.
func boundaryFor(parts []part) string {
	for n := 0; ; n++ {
		h := sha256.New()
		fmt.Fprintf(h, "%d\n", n)
		for _, p := range parts {
			for _, f := range p.header {
				fmt.Fprintf(h, "%s: %s\n", f[0], f[1])
			}
			fmt.Fprintf(h, "%d\n", len(p.body))
			h.Write(p.body)
		}
		boundary := "cimid-" + hex.EncodeToString(h.Sum(nil))[:32]
		clash := false
		for _, p := range parts {
			clash = clash || bytes.Contains(p.body, []byte("--"+boundary))
		}
		if !clash {
			return boundary
		}
	}
}
