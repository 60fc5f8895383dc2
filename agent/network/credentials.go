package network

import (
	"cimid/agent/records"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
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

func (s *Service) credentialRoutes() []api.Route {
	k := simple[credentialRecord]{s: s, kind: kindCredentials, what: "Credential", memberKey: "credentials",
		doc:    func(u api.URLs, c credentialRecord) any { return s.credentialDoc(u, c) },
		metaOf: func(c *credentialRecord) *meta { return &c.meta },
		decode: decodeDoc[cimi.Credential]("Credential")}
	return k.routes(s.createCredential)
}

func (s *Service) credentialTemplateRoutes() []api.Route {
	k := simple[credentialTemplateRecord]{s: s, kind: kindCredentialTemplates, what: "CredentialTemplate", memberKey: "credentialTemplates",
		doc:    func(u api.URLs, c credentialTemplateRecord) any { return s.credentialTemplateDoc(u, c) },
		metaOf: func(c *credentialTemplateRecord) *meta { return &c.meta },
		decode: decodeDoc[cimi.CredentialTemplate]("CredentialTemplate")}
	return k.routes(s.createCredentialTemplate)
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
	rec := credentialTemplateRecord{meta: newMeta(job.NewID(), body.Name, body.Description, body.Properties, s.now()), credSpec: spec}
	return s.created(rq, kindCredentialTemplates, "CredentialTemplate", rec.ID,
		func(tx *store.Tx) error { return records.Put(tx, kindCredentialTemplates, rec.ID, rec) },
		func() any { return s.credentialTemplateDoc(rq.URLs, rec) })
}

func (s *Service) createCredential(rq *api.Request) (api.Reply, error) {
	var body cimi.CredentialCreate
	if err := rq.Decode(&body, "CredentialCreate"); err != nil {
		return api.Reply{}, err
	}
	if body.CredentialTemplate == nil {
		return api.Reply{}, errdefs.Invalidf("credentialTemplate is required, by reference {\"href\": ...} or by value {\"userName\": ..., \"key\": ...}")
	}
	id := job.NewID()
	var rec credentialRecord
	return s.created(rq, kindCredentials, "Credential", id, func(tx *store.Tx) error {
		spec, err := s.lookupCredential(tx, rq.URLs, body.CredentialTemplate, false)
		if err != nil {
			return err
		}
		rec = credentialRecord{meta: newMeta(id, body.Name, body.Description, body.Properties, s.now()), credSpec: spec}
		return records.Put(tx, kindCredentials, id, rec)
	}, func() any { return s.credentialDoc(rq.URLs, rec) })
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
		id, err := refID(urls, in.Href, kindCredentials, "Credential")
		if err != nil {
			return credSpec{}, err
		}
		c, err := records.Get[credentialRecord](tx, kindCredentials, id, "Credential")
		if err != nil {
			return credSpec{}, referenced(err)
		}
		return c.credSpec, nil
	}
	id, err := refID(urls, in.Href, kindCredentialTemplates, "CredentialTemplate")
	if err != nil {
		return credSpec{}, err
	}
	c, err := records.Get[credentialTemplateRecord](tx, kindCredentialTemplates, id, "CredentialTemplate")
	if err != nil {
		return credSpec{}, referenced(err)
	}
	return c.credSpec, nil
}
