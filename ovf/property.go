package ovf

import (
	"regexp"
	"strconv"
	"strings"
)

var qualifierRE = regexp.MustCompile(`(MinLen|MaxLen|MinValue|MaxValue)\(\s*(-?[0-9.]+)\s*\)|ValueMap\{([^}]*)\}`)

// ValidateProperty checks a value for a ProductSection property against
// its ovf:type and ovf:qualifiers (MinLen, MaxLen, MinValue, MaxValue,
// ValueMap). Unknown qualifiers are ignored. Errors never quote the value
// of a password property.
func ValidateProperty(prop Property, value string) error {
	shown := strconv.Quote(value)
	if prop.Password {
		shown = "(password value)"
	}
	bad := func(format string, args ...any) error {
		return invalidf(0, "property %q: value %s "+format, append([]any{prop.Key, shown}, args...)...)
	}
	var num float64
	isNum := false
	switch t := strings.TrimSpace(prop.Type); t {
	case "", "string":
	case "boolean":
		if !strings.EqualFold(value, "true") && !strings.EqualFold(value, "false") {
			return bad("is not a boolean")
		}
	case "uint8", "uint16", "uint32", "uint64":
		bitsize, _ := strconv.Atoi(strings.TrimPrefix(t, "uint"))
		v, err := strconv.ParseUint(value, 10, bitsize)
		if err != nil {
			return bad("is not a %s", t)
		}
		num, isNum = float64(v), true
	case "sint8", "sint16", "sint32", "sint64":
		bitsize, _ := strconv.Atoi(strings.TrimPrefix(t, "sint"))
		v, err := strconv.ParseInt(value, 10, bitsize)
		if err != nil {
			return bad("is not a %s", t)
		}
		num, isNum = float64(v), true
	case "real32", "real64":
		bitsize, _ := strconv.Atoi(strings.TrimPrefix(t, "real"))
		v, err := strconv.ParseFloat(value, bitsize)
		if err != nil {
			return bad("is not a %s", t)
		}
		num, isNum = v, true
	default:
		return invalidf(0, "property %q has unknown type %q", prop.Key, t)
	}
	for _, m := range qualifierRE.FindAllStringSubmatch(prop.Qualifiers, -1) {
		if m[1] == "" {
			var allowed []string
			for _, v := range strings.Split(m[3], ",") {
				allowed = append(allowed, strings.Trim(strings.TrimSpace(v), `"`))
			}
			ok := false
			for _, a := range allowed {
				if a == value {
					ok = true
				}
			}
			if !ok {
				return bad("is not one of %s", strings.Join(allowed, ", "))
			}
			continue
		}
		limit, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		switch m[1] {
		case "MinLen":
			if float64(len([]rune(value))) < limit {
				return bad("is shorter than %s characters", m[2])
			}
		case "MaxLen":
			if float64(len([]rune(value))) > limit {
				return bad("is longer than %s characters", m[2])
			}
		case "MinValue":
			if isNum && num < limit {
				return bad("is below %s", m[2])
			}
		case "MaxValue":
			if isNum && num > limit {
				return bad("is above %s", m[2])
			}
		}
	}
	return nil
}
