package m365sim

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Property tables: one bit per Graph property, so $select, change masks and
// Prefer: return=minimal are cheap bit operations.

// prop is one Graph property of a user or group (R): its name and how it is written (nil for a
// navigation property).
type prop[R any] struct {
	name  string
	write func(e *enc, r R)
}

var userProps = []prop[*userRec]{
	{"id", func(e *enc, u *userRec) { e.str("id", u.ID) }},
	{"businessPhones", func(e *enc, u *userRec) { e.strs("businessPhones", u.BusinessPhones) }},
	{"displayName", func(e *enc, u *userRec) { e.strOrNull("displayName", u.DisplayName) }},
	{"givenName", func(e *enc, u *userRec) { e.strOrNull("givenName", u.GivenName) }},
	{"jobTitle", func(e *enc, u *userRec) { e.strOrNull("jobTitle", u.JobTitle) }},
	{"mail", func(e *enc, u *userRec) { e.strOrNull("mail", u.Mail) }},
	{"mobilePhone", func(e *enc, u *userRec) { e.strOrNull("mobilePhone", u.MobilePhone) }},
	{"officeLocation", func(e *enc, u *userRec) { e.strOrNull("officeLocation", u.OfficeLocation) }},
	{"preferredLanguage", func(e *enc, u *userRec) { e.strOrNull("preferredLanguage", u.PreferredLanguage) }},
	{"surname", func(e *enc, u *userRec) { e.strOrNull("surname", u.Surname) }},
	{"userPrincipalName", func(e *enc, u *userRec) { e.strOrNull("userPrincipalName", u.UserPrincipalName) }},
	{"department", func(e *enc, u *userRec) { e.strOrNull("department", u.Department) }},
	{"employeeId", func(e *enc, u *userRec) { e.strOrNull("employeeId", u.EmployeeID) }},
	{"accountEnabled", func(e *enc, u *userRec) { e.boolean("accountEnabled", u.AccountEnabled) }},
	{"manager", nil}, // navigation property: only through users/delta ($select=manager) and /manager
}

const (
	uID uint64 = 1 << iota
	uBusinessPhones
	uDisplayName
	uGivenName
	uJobTitle
	uMail
	uMobilePhone
	uOfficeLocation
	uPreferredLanguage
	uSurname
	uUserPrincipalName
	uDepartment
	uEmployeeID
	uAccountEnabled
	uManager
)

const userAllProps = uManager<<1 - 1

// userDefaultProps is what Graph returns for users without $select.
const userDefaultProps = uID | uBusinessPhones | uDisplayName | uGivenName | uJobTitle | uMail |
	uMobilePhone | uOfficeLocation | uPreferredLanguage | uSurname | uUserPrincipalName

func diffUser(a, b *User) uint64 {
	var m uint64
	set := func(bit uint64, changed bool) {
		if changed {
			m |= bit
		}
	}
	set(uBusinessPhones, !slices.Equal(a.BusinessPhones, b.BusinessPhones))
	set(uDisplayName, a.DisplayName != b.DisplayName)
	set(uGivenName, a.GivenName != b.GivenName)
	set(uJobTitle, a.JobTitle != b.JobTitle)
	set(uMail, a.Mail != b.Mail)
	set(uMobilePhone, a.MobilePhone != b.MobilePhone)
	set(uOfficeLocation, a.OfficeLocation != b.OfficeLocation)
	set(uPreferredLanguage, a.PreferredLanguage != b.PreferredLanguage)
	set(uSurname, a.Surname != b.Surname)
	set(uUserPrincipalName, a.UserPrincipalName != b.UserPrincipalName)
	set(uDepartment, a.Department != b.Department)
	set(uEmployeeID, a.EmployeeID != b.EmployeeID)
	set(uAccountEnabled, a.AccountEnabled != b.AccountEnabled)
	set(uManager, !strings.EqualFold(a.ManagerID, b.ManagerID))
	return m
}

var groupProps = []prop[*groupRec]{
	{"id", func(e *enc, g *groupRec) { e.str("id", g.ID) }},
	{"createdDateTime", func(e *enc, g *groupRec) { e.str("createdDateTime", g.created.UTC().Format(time.RFC3339)) }},
	{"description", func(e *enc, g *groupRec) { e.strOrNull("description", g.Description) }},
	{"displayName", func(e *enc, g *groupRec) { e.strOrNull("displayName", g.DisplayName) }},
	{"groupTypes", func(e *enc, g *groupRec) { e.strs("groupTypes", g.GroupTypes) }},
	{"mail", func(e *enc, g *groupRec) { e.strOrNull("mail", g.Mail) }},
	{"mailEnabled", func(e *enc, g *groupRec) { e.boolean("mailEnabled", g.MailEnabled) }},
	{"mailNickname", func(e *enc, g *groupRec) { e.strOrNull("mailNickname", g.MailNickname) }},
	{"securityEnabled", func(e *enc, g *groupRec) { e.boolean("securityEnabled", g.SecurityEnabled) }},
	{"members", nil}, // navigation property: only through groups/delta ($select=members)
}

const (
	gID uint64 = 1 << iota
	gCreatedDateTime
	gDescription
	gDisplayName
	gGroupTypes
	gMail
	gMailEnabled
	gMailNickname
	gSecurityEnabled
	gMembers
)

const groupAllProps = gMembers<<1 - 1
const groupDefaultProps = groupAllProps &^ gMembers

// parseSelect turns a $select value into a property mask; id is always included.
// It returns the name of the first unknown property, if any.
func parseSelect(v string, names []string, def uint64) (mask uint64, unknown string) {
	if strings.TrimSpace(v) == "" {
		return def, ""
	}
	mask = 1 // id
	for p := range strings.SplitSeq(v, ",") {
		p = strings.TrimSpace(p)
		i := slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, p) })
		if i < 0 {
			return 0, p
		}
		mask |= 1 << i
	}
	return mask, ""
}

var (
	userPropNames  = propNames(userProps)
	groupPropNames = propNames(groupProps)
)

// propNames lists the names of props, by mask bit.
func propNames[R any](props []prop[R]) []string {
	var n []string
	for _, p := range props {
		n = append(n, p.name)
	}
	return n
}

// selectList renders a mask back into the "(a,b,c)" part of an @odata.context.
func selectList(mask uint64, names []string) string {
	var parts []string
	for i, n := range names {
		if mask&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, ",")
}

func writeUser(e *enc, u *userRec, mask uint64)   { writeProps(e, userProps, u, mask) }
func writeGroup(e *enc, g *groupRec, mask uint64) { writeProps(e, groupProps, g, mask) }

// writeProps writes the properties of r that are in mask.
func writeProps[R any](e *enc, props []prop[R], r R, mask uint64) {
	for i, p := range props {
		if mask&(1<<i) != 0 && p.write != nil {
			p.write(e, r)
		}
	}
}

// enc is a small append-only JSON writer: the sim encodes large pages without reflection.
type enc struct {
	b     []byte
	first []bool
}

func (e *enc) sep() {
	n := len(e.first) - 1
	if n >= 0 {
		if !e.first[n] {
			e.b = append(e.b, ',')
		}
		e.first[n] = false
	}
}

func (e *enc) open()     { e.b = append(e.b, '{'); e.first = append(e.first, true) }
func (e *enc) close()    { e.b = append(e.b, '}'); e.first = e.first[:len(e.first)-1] }
func (e *enc) openArr()  { e.b = append(e.b, '['); e.first = append(e.first, true) }
func (e *enc) closeArr() { e.b = append(e.b, ']'); e.first = e.first[:len(e.first)-1] }

// elem starts an array element (adds the comma).
func (e *enc) elem() { e.sep() }

func (e *enc) key(k string) {
	e.sep()
	e.b = appendJSONString(e.b, k)
	e.b = append(e.b, ':')
}

func (e *enc) str(k, v string) { e.key(k); e.b = appendJSONString(e.b, v) }

func (e *enc) strOrNull(k, v string) {
	e.key(k)
	if v == "" {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = appendJSONString(e.b, v)
}

func (e *enc) boolean(k string, v bool) { e.key(k); e.b = strconv.AppendBool(e.b, v) }
func (e *enc) num(k string, v int)      { e.key(k); e.b = strconv.AppendInt(e.b, int64(v), 10) }
func (e *enc) null(k string)            { e.key(k); e.b = append(e.b, "null"...) }

func (e *enc) strs(k string, vs []string) {
	e.key(k)
	e.b = append(e.b, '[')
	for i, v := range vs {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = appendJSONString(e.b, v)
	}
	e.b = append(e.b, ']')
}

// removed writes "@removed": {"reason": reason}.
func (e *enc) removed(reason string) {
	e.key("@removed")
	e.open()
	e.str("reason", reason)
	e.close()
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
