package ovf

import (
	"crypto/sha1"
	"crypto/sha512"
)

func sha1Of(b []byte) []byte   { s := sha1.Sum(b); return s[:] }
func sha512Of(b []byte) []byte { s := sha512.Sum512(b); return s[:] }
