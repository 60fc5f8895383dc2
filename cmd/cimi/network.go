package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func networkKind() kind {
	return kind{noun: "network", collection: "networks", deletable: true}
}

func credentialKind() kind {
	return kind{noun: "credential", collection: "credentials", deletable: true}
}

func (a *app) networkCommand() *cobra.Command {
	k := networkKind()
	return a.kindCommand(k, "Create, list and delete virtual networks", a.networkCreateCommand(k))
}

func (a *app) credentialCommand() *cobra.Command {
	k := credentialKind()
	return a.kindCommand(k, "Create, list and delete credentials (SSH keys, passwords) for guests", a.credentialCreateCommand(k))
}

func (a *app) networkCreateCommand(k kind) *cobra.Command {
	var (
		c         createFlags
		forward   string
		subnet    string
		dhcpRange string
		mtu       int
		template  string
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME [--forward nat|isolated] [--subnet CIDR] [--dhcp-range FIRST-LAST] [--mtu N] | --template REF",
		Short: "Create a virtual network",
		Long: `Create a virtual network: NAT to the host's uplink (--forward nat, the default)
or isolated from it (--forward isolated). Without --subnet the server picks a
free /24; without --dhcp-range DHCP hands out the upper half of the subnet.
--template creates it from a stored network template instead. Waits for the
job and prints the new network's URL.`,
		Args: exactArgs(0, "no arguments"),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			switch strings.ToLower(forward) {
			case "", "nat", "isolated":
			default:
				return usagef("invalid --forward %q: want nat or isolated", forward)
			}
			if dhcpRange != "" && subnet == "" {
				return usagef("--dhcp-range needs --subnet")
			}
			if mtu < 0 {
				return usagef("--mtu must be positive")
			}
			prefix, err := a.client.Prefix(ctx)
			if err != nil {
				return err
			}
			tmpl := map[string]any{}
			if template != "" {
				href, err := a.client.ResolveMember(ctx, "networkTemplates", template)
				if err != nil {
					return err
				}
				tmpl["href"] = href
			} else {
				config := map[string]any{}
				setString(config, "forwardMode", strings.ToLower(forward))
				setString(config, "subnet", subnet)
				setString(config, "dhcpRange", dhcpRange)
				if mtu > 0 {
					config["mtu"] = mtu
				}
				tmpl["networkConfig"] = config
			}
			body := map[string]any{"resourceURI": prefix + "/NetworkCreate", "name": c.name, "networkTemplate": tmpl}
			setString(body, "description", c.description)
			if len(c.properties) > 0 {
				body["properties"] = c.properties
			}
			return a.create(ctx, k, c.name, body, c.noWait)
		}),
	}
	c.register(cmd, k.noun)
	f := cmd.Flags()
	f.StringVar(&forward, "forward", "", "nat (default) or isolated")
	f.StringVar(&subnet, "subnet", "", "IPv4 subnet, e.g. 10.231.7.0/24 (default: a free /24)")
	f.StringVar(&dhcpRange, "dhcp-range", "", "addresses DHCP hands out, e.g. 10.231.7.100-10.231.7.200")
	f.IntVar(&mtu, "mtu", 0, "MTU of the network (default: the host's)")
	f.StringVar(&template, "template", "", "network template: ID, path or URL")
	cmd.MarkFlagsMutuallyExclusive("template", "forward")
	cmd.MarkFlagsMutuallyExclusive("template", "subnet")
	cmd.MarkFlagsMutuallyExclusive("template", "dhcp-range")
	cmd.MarkFlagsMutuallyExclusive("template", "mtu")
	return cmd
}

func (a *app) credentialCreateCommand(k kind) *cobra.Command {
	var (
		c             createFlags
		user          string
		keyFile       string
		passwordStdin bool
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME [--user USER] (--ssh-key FILE | --password-stdin)",
		Short: "Create a credential from an SSH public key and/or a password",
		Long: `Create a credential: a user name with an OpenSSH public key (--ssh-key reads a
.pub file, "-" for standard input) and/or a password read from standard input
(--password-stdin; the server keeps only a salted hash). A machine template
naming the credential gets it through cloud-init on first boot.`,
		Args: exactArgs(0, "no arguments"),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			if keyFile == "" && !passwordStdin {
				return usagef("give --ssh-key FILE, --password-stdin or both")
			}
			if keyFile == "-" && passwordStdin {
				return usagef("--ssh-key - and --password-stdin cannot both read standard input")
			}
			tmpl := map[string]any{}
			setString(tmpl, "userName", user)
			if keyFile != "" {
				key, err := readKeyFile(keyFile)
				if err != nil {
					return err
				}
				tmpl["key"] = key
			}
			if passwordStdin {
				b, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
				if err != nil {
					return fmt.Errorf("reading the password: %w", err)
				}
				pw := strings.TrimRight(string(b), "\r\n")
				if pw == "" {
					return usagef("--password-stdin read an empty password")
				}
				tmpl["password"] = pw
			}
			prefix, err := a.client.Prefix(ctx)
			if err != nil {
				return err
			}
			body := map[string]any{"resourceURI": prefix + "/CredentialCreate", "name": c.name, "credentialTemplate": tmpl}
			setString(body, "description", c.description)
			if len(c.properties) > 0 {
				body["properties"] = c.properties
			}
			return a.create(ctx, k, c.name, body, c.noWait)
		}),
	}
	c.register(cmd, k.noun)
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "user name created in the guest (default: the image's default user)")
	f.StringVar(&keyFile, "ssh-key", "", "OpenSSH public key file (e.g. ~/.ssh/id_ed25519.pub), - for standard input")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read a password for --user from standard input")
	return cmd
}

// readKeyFile reads the first key line of an OpenSSH public key file.
func readKeyFile(name string) (string, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return "", fmt.Errorf("reading the SSH key: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			if strings.Contains(line, "PRIVATE KEY") {
				return "", usagef("%s holds a private key: give the public one (.pub)", name)
			}
			return line, nil
		}
	}
	return "", usagef("%s holds no key", name)
}

func setString(m map[string]any, key, value string) {
	if value != "" {
		m[key] = value
	}
}
