package cloudinit

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mimePart is a body part read back from a multipart document, its body
// decoded from its transfer encoding.
type mimePart struct {
	mediaType string
	header    map[string][]string
	body      []byte
}

// readMultipart parses a user-data file with net/mail and mime/multipart
// and checks what cloud-init needs to see a MIME document.
func readMultipart(t *testing.T, doc []byte) []mimePart {
	t.Helper()
	if !bytes.Contains(bytes.ToLower(doc[:min(len(doc), 4096)]), []byte("mime-version:")) {
		t.Fatalf("no MIME-Version in the first 4096 bytes: cloud-init would not read a MIME document:\n%s", doc)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("header: %v\n%s", err, doc)
	}
	if v := msg.Header.Get("Mime-Version"); v != "1.0" {
		t.Errorf("MIME-Version %q", v)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	var parts []mimePart
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v\n%s", len(parts)+1, err, doc)
		}
		raw, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		body := raw
		switch enc := p.Header.Get("Content-Transfer-Encoding"); enc {
		case "base64":
			if body, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\n", "")); err != nil {
				t.Fatalf("part %d: base64: %v", len(parts)+1, err)
			}
		case "quoted-printable":
			if body, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw))); err != nil {
				t.Fatalf("part %d: quoted-printable: %v", len(parts)+1, err)
			}
		case "", "7bit", "8bit":
		default:
			t.Fatalf("part %d: transfer encoding %q", len(parts)+1, enc)
		}
		pt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part %d: Content-Type %q: %v", len(parts)+1, p.Header.Get("Content-Type"), err)
		}
		parts = append(parts, mimePart{mediaType: pt, header: p.Header, body: body})
	}
	return parts
}

// pyPart is a part as Python's email package, which cloud-init reads user
// data with, sees it.
type pyPart struct {
	Type     string  `json:"type"`
	Filename *string `json:"filename"`
	Merge    *string `json:"merge"`
	Payload  []byte  `json:"payload"`
}

// readWithPython parses doc as cloud-init does (email.message_from_string
// of the UTF-8 text) and returns its leaf parts.
func readWithPython(t *testing.T, doc []byte) []pyPart {
	t.Helper()
	const script = `import sys, json, email, base64
msg = email.message_from_string(sys.stdin.buffer.read().decode("utf-8"))
out = []
for p in msg.walk():
    if p.get_content_maintype() == "multipart":
        continue
    out.append({"type": p.get_content_type(), "filename": p.get_filename(), "merge": p.get("Merge-Type"),
                "payload": base64.b64encode(p.get_payload(decode=True)).decode()})
json.dump(out, sys.stdout)
`
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Stdin = bytes.NewReader(doc)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 email: %v: %s", err, out)
	}
	var parts []pyPart
	if err := json.Unmarshal(out, &parts); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return parts
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// wantPart is a user part expected in the combined document.
type wantPart struct {
	mediaType string
	body      string
	header    map[string]string // extra fields expected as they are
}

func TestSeedCombinesUserDataWithCredential(t *testing.T) {
	users := `MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="==users=="
X-Note: preamble follows

This is the preamble.
--==users==
Content-Type: text/x-shellscript; charset="utf-8"
Content-Transfer-Encoding: quoted-printable
Content-Disposition: attachment; filename="hello.sh"

#!/bin/sh
echo "caf=C3=A9 =3D ok"
--==users==
Content-Type: text/cloud-config
Merge-Type: list(append)+dict(recurse_array)+str()
X-Custom: kept

#cloud-config
runcmd:
  - [touch, /run/own]
--==users==--
`
	cases := []struct {
		name  string
		data  []byte
		parts []wantPart
	}{
		{"cloud-config", []byte("#cloud-config\nhostname: mine\nruncmd:\n  - [touch, /run/x]\n"),
			[]wantPart{{mediaType: "text/cloud-config", body: "#cloud-config\nhostname: mine\nruncmd:\n  - [touch, /run/x]\n"}}},
		{"script without final line end", []byte("#!/bin/sh\necho hi"), []wantPart{{mediaType: "text/x-shellscript", body: "#!/bin/sh\necho hi"}}},
		{"script that mentions MIME-Version", []byte("#!/bin/sh\necho 'MIME-Version: 1.0'\n"),
			[]wantPart{{mediaType: "text/x-shellscript", body: "#!/bin/sh\necho 'MIME-Version: 1.0'\n"}}},
		{"include", []byte("#include\nhttps://config.example/a.yaml\n"), []wantPart{{mediaType: "text/x-include-url", body: "#include\nhttps://config.example/a.yaml\n"}}},
		{"jinja", []byte("## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n"),
			[]wantPart{{mediaType: "text/jinja2", body: "## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n"}}},
		{"white space and case", []byte("\n  #Cloud-Config\nruncmd: []\n"), []wantPart{{mediaType: "text/cloud-config", body: "\n  #Cloud-Config\nruncmd: []\n"}}},
		{"boothook", []byte("#cloud-boothook\n#!/bin/sh\ntrue\n"), []wantPart{{mediaType: "text/cloud-boothook", body: "#cloud-boothook\n#!/bin/sh\ntrue\n"}}},
		{"archive", []byte("#cloud-config-archive\n- type: text/cloud-config\n  content: 'runcmd: []'\n"),
			[]wantPart{{mediaType: "text/cloud-config-archive", body: "#cloud-config-archive\n- type: text/cloud-config\n  content: 'runcmd: []'\n"}}},
		{"unknown text", []byte("just some words\n"), []wantPart{{mediaType: "text/plain", body: "just some words\n"}}},
		{"UTF-8 text", []byte("#!/bin/sh\necho 'grüße'\n"), []wantPart{{mediaType: "text/x-shellscript", body: "#!/bin/sh\necho 'grüße'\n",
			header: map[string]string{"Content-Transfer-Encoding": "base64"}}}},
		{"bytes that are not UTF-8", []byte("#!/bin/sh\necho '\xe9t\xe9'\n\x00"), []wantPart{{mediaType: "text/x-shellscript", body: "#!/bin/sh\necho '\xe9t\xe9'\n\x00",
			header: map[string]string{"Content-Transfer-Encoding": "base64"}}}},
		{"gzip'd script", gzipped(t, []byte("#!/bin/sh\necho zipped\n")), []wantPart{{mediaType: "text/x-shellscript", body: "#!/bin/sh\necho zipped\n"}}},
		{"single-part MIME", []byte("MIME-Version: 1.0\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"one.sh\"\n\n#!/bin/sh\necho one\n"),
			[]wantPart{{mediaType: "text/x-shellscript", body: "#!/bin/sh\necho one\n", header: map[string]string{"Content-Disposition": `attachment; filename="one.sh"`}}}},
		{"multipart", []byte(users), []wantPart{
			{mediaType: "text/x-shellscript", body: "#!/bin/sh\necho \"café = ok\"",
				header: map[string]string{"Content-Transfer-Encoding": "quoted-printable", "Content-Disposition": `attachment; filename="hello.sh"`}},
			{mediaType: "text/cloud-config", body: "#cloud-config\nruncmd:\n  - [touch, /run/own]",
				header: map[string]string{"Merge-Type": "list(append)+dict(recurse_array)+str()", "X-Custom": "kept"}},
		}},
		{"gzip'd multipart", gzipped(t, []byte(users)), []wantPart{
			{mediaType: "text/x-shellscript", body: "#!/bin/sh\necho \"café = ok\""},
			{mediaType: "text/cloud-config", body: "#cloud-config\nruncmd:\n  - [touch, /run/own]"},
		}},
	}
	plain := testSeed()
	plainFiles, err := plain.Files()
	if err != nil {
		t.Fatal(err)
	}
	credConfig := plainFiles[1].Data
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := CheckUserData(c.data); err != nil {
				t.Fatalf("CheckUserData: %v", err)
			}
			s := testSeed()
			s.UserData = c.data
			files, err := s.Files()
			if err != nil {
				t.Fatal(err)
			}
			doc := files[1].Data
			parts := readMultipart(t, doc)
			if len(parts) != len(c.parts)+1 {
				t.Fatalf("%d parts, want %d:\n%s", len(parts), len(c.parts)+1, doc)
			}
			for i, w := range c.parts {
				p := parts[i]
				if p.mediaType != w.mediaType || string(p.body) != w.body {
					t.Errorf("part %d: %s %q, want %s %q", i+1, p.mediaType, p.body, w.mediaType, w.body)
				}
				for k, v := range w.header {
					if got := p.header[k]; len(got) != 1 || got[0] != v {
						t.Errorf("part %d: %s %q, want %q", i+1, k, got, v)
					}
				}
			}
			cred := parts[len(parts)-1]
			if cred.mediaType != "text/cloud-config" || !bytes.Equal(cred.body, credConfig) {
				t.Errorf("last part: %s\n%s\nwant the credential's cloud-config:\n%s", cred.mediaType, cred.body, credConfig)
			}
			if got := cred.header["Merge-Type"]; len(got) != 1 || got[0] != MergeType {
				t.Errorf("Merge-Type of the credential's part: %q", got)
			}
			cc := loadYAML(t, cred.body).(map[string]any)
			alice := cc["users"].([]any)[1].(map[string]any)
			if alice["name"] != "alice" || !reflect.DeepEqual(alice["ssh_authorized_keys"], []any{testKey}) {
				t.Errorf("the credential's cloud-config as YAML: %v", cc)
			}

			// Python's email package, which cloud-init reads user data
			// with, sees the same parts.
			py := readWithPython(t, doc)
			if len(py) != len(parts) {
				t.Fatalf("python sees %d parts, Go %d", len(py), len(parts))
			}
			for i, p := range py {
				if p.Type != parts[i].mediaType || !bytes.Equal(p.Payload, parts[i].body) {
					t.Errorf("python's part %d: %s %q, want %s %q", i+1, p.Type, p.Payload, parts[i].mediaType, parts[i].body)
				}
			}
			if last := py[len(py)-1]; last.Merge == nil || *last.Merge != MergeType || last.Filename == nil || *last.Filename != credentialFile {
				t.Errorf("python reads the credential's part as %+v", last)
			}

			// The same inputs give the same bytes, down to the ISO.
			again, err := s.Files()
			if err != nil || !bytes.Equal(again[1].Data, doc) {
				t.Errorf("a second rendering differs (%v):\n%s", err, again[1].Data)
			}
			when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			a, errA := s.ISO(when)
			b, errB := s.ISO(when)
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				t.Fatalf("two ISOs of the same seed differ (%v, %v)", errA, errB)
			}
			if got := readISO(t, a).joliet["user-data"]; !bytes.Equal(got, doc) {
				t.Errorf("user-data read back from the ISO differs:\n%s", got)
			}
		})
	}
}

func TestSeedBoundaryFollowsContent(t *testing.T) {
	boundary := func(data string) string {
		s := testSeed()
		s.UserData = []byte(data)
		files, err := s.Files()
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(files[1].Data))
		if err != nil {
			t.Fatal(err)
		}
		_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		return params["boundary"]
	}
	a, b := boundary("#!/bin/sh\necho a\n"), boundary("#!/bin/sh\necho b\n")
	if a == b || a != boundary("#!/bin/sh\necho a\n") {
		t.Errorf("boundaries %q and %q", a, b)
	}
	// A body that holds the boundary the content would give gets another.
	parts := []part{newPart("text/plain", "x", []byte("x"), nil)}
	first := boundaryFor(parts)
	parts[0].body = []byte("x\n--" + first + "\n")
	clash := boundaryFor([]part{{header: parts[0].header, body: parts[0].body}})
	if bytes.Contains(parts[0].body, []byte("--"+clash)) {
		t.Errorf("boundary %q is in the body", clash)
	}
}

func TestContentType(t *testing.T) {
	for in, want := range map[string]string{
		"#!/bin/bash\n":            "text/x-shellscript",
		"#cloud-config\n":          "text/cloud-config",
		"#CLOUD-CONFIG\n":          "text/cloud-config",
		"#cloud-config-archive\n":  "text/cloud-config-archive",
		"#cloud-config-jsonp\n":    "text/cloud-config-jsonp",
		"#include-once\nhttp://a":  "text/x-include-once-url",
		"#include\nhttp://a":       "text/x-include-url",
		"#part-handler\n":          "text/part-handler",
		"#cloud-boothook\n":        "text/cloud-boothook",
		"## template: jinja\n":     "text/jinja2",
		" \t\n#!/bin/sh":           "text/x-shellscript",
		"#!\xff\xfe":               "text/x-shellscript",
		"":                         "text/plain",
		"{\"ignition\": {}}":       "text/plain",
		"# cloud-config\n":         "text/plain",
		"text/x-shellscript-per-x": "text/plain",
	} {
		if got := ContentType([]byte(in)); got != want {
			t.Errorf("ContentType(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCheckUserDataRefuses(t *testing.T) {
	big := gzipped(t, make([]byte, MaxExpandedUserData+1))
	good := gzipped(t, []byte("#!/bin/sh\n"))
	for name, c := range map[string]struct {
		data string
		want string
	}{
		"gzip header only":     {"\x1f\x8b\x08\x00", "does not decompress"},
		"truncated gzip":       {string(good[:len(good)-6]), "does not decompress"},
		"gzip of too much":     {string(big), "more than 1048576 bytes"},
		"MIME not UTF-8":       {"MIME-Version: 1.0\nContent-Type: text/plain\n\n\xff\xfe\n", "not UTF-8"},
		"Content-Type garbage": {"MIME-Version: 1.0\nContent-Type: ;;\n\nx\n", "does not parse"},
		"no boundary":          {"MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\n\nbody\n--x--\n", "without a boundary"},
		"unterminated":         {"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello\n", "part 1 cannot be read"},
	} {
		err := CheckUserData([]byte(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
		s := testSeed()
		s.UserData = []byte(c.data)
		if _, err := s.Files(); err == nil || !strings.Contains(err.Error(), "cloud-init seed: user data ") {
			t.Errorf("%s: Files: %v", name, err)
		}
	}
	for name, data := range map[string]string{
		"binary":              "\x00\x01\x02\xff",
		"script":              "#!/bin/sh\n",
		"MIME without a type": "MIME-Version: 1.0\n\n#cloud-config\n",
		"gzip":                string(good),
	} {
		if err := CheckUserData([]byte(data)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
