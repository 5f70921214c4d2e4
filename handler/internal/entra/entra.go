// Package entra holds the directory objects the integration reads from Microsoft Graph (users,
// groups, membership changes) as plain data; Graph's failures are errkind's, as every service's.
// It exists so that sync, API and tests never import the compile-heavy Graph SDK: the graph package
// fills these types, everyone else consumes them.
package entra

// Removal says why a delta entry carries @removed.
type Removal string

const (
	NotRemoved  Removal = ""
	SoftDeleted Removal = "changed" // restorable; a restore reappears as a normal object
	HardDeleted Removal = "deleted"
)

// User is an Entra user as selected for stakeholder sync.
type User struct {
	ID                string
	DisplayName       string
	GivenName         string
	Surname           string
	Mail              string
	UserPrincipalName string
	MobilePhone       string
	BusinessPhones    []string
	Department        string
	JobTitle          string
	OfficeLocation    string
	ManagerID         string
	AccountEnabled    bool
	Removed           Removal
}

// UserPage is one page of users/delta. Exactly one of NextLink and DeltaLink is set.
type UserPage struct {
	Users     []User
	NextLink  string
	DeltaLink string
}

// MemberChange is one entry of a group's members@delta.
type MemberChange struct {
	ID      string
	IsGroup bool // a nested group; otherwise a user (devices and contacts are dropped)
	Removed bool
}

// Group is an Entra group with the membership changes of one delta page.
type Group struct {
	ID          string
	DisplayName string
	Description string
	Members     []MemberChange
	Removed     Removal
}

// GroupPage is one page of groups/delta.
type GroupPage struct {
	Groups    []Group
	NextLink  string
	DeltaLink string
}
