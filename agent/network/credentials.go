package network

import (
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/resource"
	"cimid/store"
)

// credFromInput validates a credential given by value: the key is checked
// and the password hashed; at least one of them is required.
func credFromInput(userName, password, key string) (credSpec, error) {
	var c credSpec
	var err error
	if c.UserName, err = checkUserName(userName); err != nil {
		return c, err
	}
	if strings.TrimSpace(key) != "" {
		if c.Key, err = checkSSHKey(key); err != nil {
			return c, err
		}
	}
	if password != "" {
		if c.UserName == "" {
			return c, errdefs.Invalidf("a password needs a userName to belong to")
		}
		if c.PasswordHash, err = hashPassword(password); err != nil {
			return c, err
		}
	}
	if c.Key == "" && c.PasswordHash == "" {
		return c, errdefs.Invalidf("a credential needs a key (an OpenSSH public key line) or a password")
	}
	return c, nil
}

func (s *Service) credentialKind() resource.Kind[credentialRecord, cimi.Credential] {
	return resource.Kind[credentialRecord, cimi.Credential]{Backend: s.backend(),
		Kind: kindCredentials, Type: "Credential", MemberKey: "credentials",
		Doc: s.credentialDoc, Meta: func(c *credentialRecord) *meta { return &c.meta }}
}

func (s *Service) credentialTemplateKind() resource.Kind[credentialTemplateRecord, cimi.CredentialTemplate] {
	return resource.Kind[credentialTemplateRecord, cimi.CredentialTemplate]{Backend: s.backend(),
		Kind: kindCredentialTemplates, Type: "CredentialTemplate", MemberKey: "credentialTemplates",
		Doc: s.credentialTemplateDoc, Meta: func(c *credentialTemplateRecord) *meta { return &c.meta }}
}

func (s *Service) credentialRoutes() []api.Route {
	k := s.credentialKind()
	return k.Routes(s.createCredential, k.Delete)
}

func (s *Service) credentialTemplateRoutes() []api.Route {
	k := s.credentialTemplateKind()
	return k.Routes(s.createCredentialTemplate, k.Delete)
}

func (s *Service) credentialDoc(urls api.URLs, c credentialRecord) *cimi.Credential {
	d := &cimi.Credential{Common: commonDoc(urls, "Credential", kindCredentials+"/"+c.ID, c.meta),
		UserName: c.UserName, Key: c.Key, HasPassword: c.PasswordHash != ""}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}, {Rel: cimi.RelDelete, Href: d.ID}}
	return d
}

func (s *Service) credentialTemplateDoc(urls api.URLs, c credentialTemplateRecord) *cimi.CredentialTemplate {
	d := &cimi.CredentialTemplate{Common: commonDoc(urls, "CredentialTemplate", kindCredentialTemplates+"/"+c.ID, c.meta),
		UserName: c.UserName, Key: c.Key, HasPassword: c.PasswordHash != ""}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}, {Rel: cimi.RelDelete, Href: d.ID}}
	return d
}

func (s *Service) createCredentialTemplate(rq *api.Request) (api.Reply, error) {
	var body cimi.CredentialTemplateCreate
	if err := rq.Decode(&body, "CredentialTemplateCreate", "CredentialTemplate"); err != nil {
		return api.Reply{}, err
	}
	in := body.CredentialTemplate
	if in == nil {
		in = &cimi.CredentialInput{UserName: body.UserName, Password: body.Password, Key: body.Key}
	} else if body.UserName != "" || body.Password != "" || body.Key != "" {
		return api.Reply{}, errdefs.Invalidf("give the template's attributes either inside credentialTemplate or at the top level, not both")
	}
	if in.Href != "" {
		return api.Reply{}, errdefs.Invalidf("a CredentialTemplate is created by value; a reference to another template is not accepted")
	}
	spec, err := credFromInput(in.UserName, in.Password, in.Key)
	if err != nil {
		return api.Reply{}, err
	}
	return s.credentialTemplateKind().Create(rq, func(_ *store.Tx, id string) (credentialTemplateRecord, error) {
		return credentialTemplateRecord{meta: newMeta(id, body.Name, body.Description, body.Properties, s.now()), credSpec: spec}, nil
	})
}

func (s *Service) createCredential(rq *api.Request) (api.Reply, error) {
	var body cimi.CredentialCreate
	if err := rq.Decode(&body, "CredentialCreate"); err != nil {
		return api.Reply{}, err
	}
	if body.CredentialTemplate == nil {
		return api.Reply{}, errdefs.Invalidf("credentialTemplate is required, by reference {\"href\": ...} or by value {\"userName\": ..., \"key\": ...}")
	}
	return s.credentialKind().Create(rq, func(tx *store.Tx, id string) (credentialRecord, error) {
		spec, err := s.lookupCredential(tx, rq.URLs, body.CredentialTemplate, false)
		if err != nil {
			return credentialRecord{}, err
		}
		return credentialRecord{meta: newMeta(id, body.Name, body.Description, body.Properties, s.now()), credSpec: spec}, nil
	})
}

// lookupCredential resolves a credential given by value, or by reference
// to a CredentialTemplate or (when credentials is set) a Credential.
func (s *Service) lookupCredential(tx *store.Tx, urls api.URLs, in *cimi.CredentialInput, credentials bool) (credSpec, error) {
	if in.Href == "" {
		return credFromInput(in.UserName, in.Password, in.Key)
	}
	if in.UserName != "" || in.Password != "" || in.Key != "" {
		return credSpec{}, errdefs.Invalidf("a credential is given by reference or by value, not both")
	}
	path, ok := urls.Path(in.Href)
	if credentials && ok && strings.HasPrefix(path, kindCredentials+"/") {
		c, err := resource.Lookup[credentialRecord](tx, urls, in.Href, kindCredentials, "Credential")
		if err != nil {
			return credSpec{}, err
		}
		return c.credSpec, nil
	}
	c, err := resource.Lookup[credentialTemplateRecord](tx, urls, in.Href, kindCredentialTemplates, "CredentialTemplate")
	if err != nil {
		return credSpec{}, err
	}
	return c.credSpec, nil
}
