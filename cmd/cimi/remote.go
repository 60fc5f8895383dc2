package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"cimid/cmd/cimi/internal/cimiclient"
)

// Remotes let one laptop manage many hosts: each is a named HTTPS
// endpoint with the fingerprint of its certificate pinned when it was
// added, and the credentials to use there (a bearer token, or the client
// certificate the host trusts). The built-in remote "local" is the unix
// socket. They are kept in $XDG_CONFIG_HOME/cimi/remotes.json (by
// default ~/.config/cimi/remotes.json), mode 0600.

// localRemote names the unix socket.
const localRemote = "local"

// remote is one stored endpoint.
type remote struct {
	URL         string `json:"url"`
	Fingerprint string `json:"fingerprint"`
	Token       string `json:"token,omitempty"`
	Cert        string `json:"cert,omitempty"` // client certificate (PEM file)
	Key         string `json:"key,omitempty"`
}

// remoteFile is the remotes file.
type remoteFile struct {
	Current string             `json:"current,omitempty"`
	Remotes map[string]*remote `json:"remotes"`
}

// configDir is where cimi keeps its files.
func (a *app) configDir() (string, error) {
	if d := a.getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "cimi"), nil
	}
	home := a.getenv("HOME")
	if home == "" {
		return "", errors.New("neither XDG_CONFIG_HOME nor HOME is set: cannot find the remotes file")
	}
	return filepath.Join(home, ".config", "cimi"), nil
}

func (a *app) loadRemotes() (*remoteFile, string, error) {
	dir, err := a.configDir()
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, "remotes.json")
	rf := &remoteFile{Remotes: map[string]*remote{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return rf, path, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read remotes: %w", err)
	}
	if err := json.Unmarshal(b, rf); err != nil {
		return nil, "", fmt.Errorf("%s is damaged: %w", path, err)
	}
	if rf.Remotes == nil {
		rf.Remotes = map[string]*remote{}
	}
	return rf, path, nil
}

func saveRemotes(path string, rf *remoteFile) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	b, err := json.MarshalIndent(rf, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write remotes: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write remotes: %w", err)
	}
	return nil
}

// applyRemote fills the connection options from the selected remote
// (--remote, CIMI_REMOTE, or the current one) unless the socket or a URL
// was given explicitly.
func (a *app) applyRemote(explicitRemote bool) (*cimiclient.Config, error) {
	cfg := &cimiclient.Config{}
	name := a.opts.remote
	if name == "" {
		name = a.getenv("CIMI_REMOTE")
		explicitRemote = name != ""
	}
	rf, _, err := a.loadRemotes()
	if err != nil {
		if explicitRemote {
			return nil, err
		}
		return cfg, nil // a damaged file must not break the local socket
	}
	if name == "" {
		name = rf.Current
	}
	if name == "" || name == localRemote {
		return cfg, nil
	}
	r := rf.Remotes[name]
	if r == nil {
		return nil, usagef("no remote named %q (see cimi remote list)", name)
	}
	cfg.URL, cfg.Fingerprint = r.URL, r.Fingerprint
	if a.opts.token == "" {
		a.opts.token = r.Token
	}
	if r.Cert != "" {
		cert, err := tls.LoadX509KeyPair(r.Cert, r.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate of remote %s: %w", name, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (a *app) remoteCommand() *cobra.Command {
	cmd := a.group("remote", "Manage the hosts this cimi talks to (add, list, switch, remove)")
	cmd.Long = `A remote is a cimid host reached over HTTPS. Adding one pins the fingerprint of
the host's certificate (compare it with "cimid fingerprint" on the host) and
records how to authenticate: a bearer token made there with "cimid token create",
or this cimi's client certificate, which the host trusts after
"cimid trust add CERT". Commands use the current remote ("local", the unix
socket, unless switched), or the one named by --remote.`
	// Remote commands manage the file; they need no connection.
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error { return a.checkOutput() }
	cmd.AddCommand(a.remoteAddCommand(), a.remoteListCommand(), a.remoteSwitchCommand(), a.remoteRemoveCommand())
	return cmd
}

func (a *app) remoteAddCommand() *cobra.Command {
	var fingerprint, token string
	var accept, useCert bool
	cmd := &cobra.Command{
		Use:   "add NAME URL",
		Short: "Add a host, pinning its certificate's fingerprint",
		Long: `Add a host reached at URL (https://HOST:PORT/). cimi connects once to read the
host's certificate and pins its SHA-256 fingerprint: pass it with --fingerprint
(print it on the host with "cimid fingerprint"), confirm it when asked, or take
what the host presents with --accept-fingerprint.

Authenticate with --token (made on the host by "cimid token create NAME"), or
with --client-cert: cimi then uses its own client certificate, created on first
use in its configuration directory; trust it on the host with
"cimid trust add client.crt".`,
		Args: exactArgs(2, "NAME and URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			name, raw := args[0], args[1]
			if err := checkRemoteName(name); err != nil {
				return err
			}
			u, err := url.Parse(raw)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				return usagef("URL must be https://HOST:PORT/, got %q", raw)
			}
			if token != "" && useCert {
				return usagef("give either --token or --client-cert")
			}
			rf, path, err := a.loadRemotes()
			if err != nil {
				return err
			}
			if _, ok := rf.Remotes[name]; ok {
				return fmt.Errorf("a remote named %q exists; remove it first", name)
			}
			presented, err := serverFingerprint(ctx, u)
			if err != nil {
				return err
			}
			switch want := strings.ReplaceAll(strings.ToLower(fingerprint), ":", ""); {
			case want != "":
				if want != presented {
					return fmt.Errorf("%s presents a certificate with fingerprint %s, not %s: not added", u.Host, presented, want)
				}
			case accept:
			default:
				if !term.IsTerminal(int(os.Stdin.Fd())) {
					return fmt.Errorf("%s presents a certificate with SHA-256 fingerprint\n  %s\n"+
						"compare it with \"cimid fingerprint\" on the host, then pass it with --fingerprint", u.Host, presented)
				}
				fmt.Fprintf(a.stderr, "%s presents a certificate with SHA-256 fingerprint\n  %s\n"+
					"Compare it with \"cimid fingerprint\" on the host. Trust it? [y/N] ", u.Host, presented)
				line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				if ans := strings.ToLower(strings.TrimSpace(line)); ans != "y" && ans != "yes" {
					return errors.New("not added")
				}
			}
			r := &remote{URL: u.String(), Fingerprint: presented, Token: token}
			if useCert {
				dir, err := a.configDir()
				if err != nil {
					return err
				}
				r.Cert, r.Key, err = ensureClientCert(dir)
				if err != nil {
					return err
				}
			}
			rf.Remotes[name] = r
			if err := saveRemotes(path, rf); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "added remote %s (%s, fingerprint %s)\n", name, r.URL, presented)
			if useCert {
				fmt.Fprintf(a.stderr, "trust this client on the host: copy %s there and run \"cimid trust add client.crt\"\n", r.Cert)
			}
			if token == "" && !useCert {
				fmt.Fprintln(a.stderr, "note: no credentials given; the host will answer 401 until you add --token or --client-cert")
			}
			fmt.Fprintf(a.stderr, "use it with \"cimi --remote %s ...\" or make it the default with \"cimi remote switch %s\"\n", name, name)
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&fingerprint, "fingerprint", "", "expected SHA-256 fingerprint of the host's certificate (from cimid fingerprint)")
	f.BoolVar(&accept, "accept-fingerprint", false, "pin whatever certificate the host presents now")
	f.StringVar(&token, "token", "", "bearer token made on the host with cimid token create")
	f.BoolVar(&useCert, "client-cert", false, "authenticate with this cimi's client certificate")
	return cmd
}

func (a *app) remoteListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the remotes; * marks the current one",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			rf, _, err := a.loadRemotes()
			if err != nil {
				return err
			}
			current := rf.Current
			if current == "" {
				current = localRemote
			}
			names := make([]string, 0, len(rf.Remotes))
			for n := range rf.Remotes {
				names = append(names, n)
			}
			sort.Strings(names)
			if a.opts.output == "json" {
				type entry struct {
					Name        string `json:"name"`
					URL         string `json:"url"`
					Fingerprint string `json:"fingerprint,omitempty"`
					Auth        string `json:"auth"`
					Current     bool   `json:"current"`
				}
				list := []entry{{Name: localRemote, URL: "unix://" + a.opts.socket, Auth: "peer credentials", Current: current == localRemote}}
				for _, n := range names {
					r := rf.Remotes[n]
					list = append(list, entry{Name: n, URL: r.URL, Fingerprint: r.Fingerprint, Auth: r.auth(), Current: current == n})
				}
				b, _ := json.MarshalIndent(list, "", "  ")
				return writeRaw(a.stdout, b)
			}
			if a.opts.xml || a.opts.output == "xml" {
				return usagef("remote list prints a table or JSON")
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "\tNAME\tURL\tFINGERPRINT\tAUTH")
			mark := func(n string) string {
				if n == current {
					return "*"
				}
				return ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark(localRemote), localRemote, "unix://"+a.opts.socket, "-", "peer credentials")
			for _, n := range names {
				r := rf.Remotes[n]
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark(n), n, r.URL, r.Fingerprint[:16]+"…", r.auth())
			}
			return tw.Flush()
		}),
	}
}

func (r *remote) auth() string {
	switch {
	case r.Token != "":
		return "token"
	case r.Cert != "":
		return "client certificate"
	}
	return "none"
}

func (a *app) remoteSwitchCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "switch NAME",
		Short:             `Make NAME the current remote ("local" for the unix socket)`,
		Args:              exactArgs(1, "one remote NAME"),
		ValidArgsFunction: a.completeRemotes,
		RunE: a.runE(func(ctx context.Context, args []string) error {
			rf, path, err := a.loadRemotes()
			if err != nil {
				return err
			}
			name := args[0]
			if _, ok := rf.Remotes[name]; !ok && name != localRemote {
				return usagef("no remote named %q (see cimi remote list)", name)
			}
			rf.Current = name
			if name == localRemote {
				rf.Current = ""
			}
			if err := saveRemotes(path, rf); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "current remote: %s\n", name)
			return nil
		}),
	}
}

func (a *app) remoteRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "remove NAME",
		Short:             "Forget a remote (its token and pinned fingerprint)",
		Args:              exactArgs(1, "one remote NAME"),
		ValidArgsFunction: a.completeRemotes,
		RunE: a.runE(func(ctx context.Context, args []string) error {
			rf, path, err := a.loadRemotes()
			if err != nil {
				return err
			}
			name := args[0]
			if _, ok := rf.Remotes[name]; !ok {
				return usagef("no remote named %q (see cimi remote list)", name)
			}
			delete(rf.Remotes, name)
			if rf.Current == name {
				rf.Current = ""
				fmt.Fprintln(a.stderr, "the current remote is local again")
			}
			if err := saveRemotes(path, rf); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed remote %s\n", name)
			return nil
		}),
	}
}

// completeRemotes completes remote names.
func (a *app) completeRemotes(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := []string{localRemote}
	if rf, _, err := a.loadRemotes(); err == nil {
		for n := range rf.Remotes {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}

func checkRemoteName(name string) error {
	if name == localRemote {
		return usagef("%q is the unix socket; choose another name", localRemote)
	}
	if name == "" || len(name) > 64 || strings.ContainsAny(name, " \t/\\:\"'") {
		return usagef("remote name %q: use letters, digits, dots, dashes or underscores", name)
	}
	return nil
}

// serverFingerprint connects to the host once and returns the SHA-256
// fingerprint of the certificate it presents.
func serverFingerprint(ctx context.Context, u *url.URL) (string, error) {
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 15 * time.Second}, Config: &tls.Config{
		InsecureSkipVerify: true, // the fingerprint is what is checked, by the user
		MinVersion:         tls.VersionTLS12,
	}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", host, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", fmt.Errorf("%s presented no certificate", host)
	}
	sum := sha256.Sum256(certs[0].Raw)
	return hex.EncodeToString(sum[:]), nil
}

// ensureClientCert returns this cimi's client certificate and key,
// creating them (ECDSA P-256, ten years) on first use.
func ensureClientCert(dir string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if _, err := os.Stat(certFile); err == nil {
		return certFile, keyFile, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", "", err
	}
	host, _ := os.Hostname()
	who := os.Getenv("USER")
	if who == "" {
		who = "cimi"
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: who + "@" + host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
