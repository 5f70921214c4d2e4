package m365sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ErrNotFound is returned by the state accessors and mutations for an unknown tenant, user or group.
var ErrNotFound = errors.New("m365sim: not found")

// User is an Entra user as the simulated tenant stores it. Empty strings are served as JSON null.
// The JSON tags are Graph's property names, so the admin API accepts Graph-shaped bodies.
type User struct {
	ID                string   `json:"id"`
	DisplayName       string   `json:"displayName"`
	GivenName         string   `json:"givenName"`
	Surname           string   `json:"surname"`
	Mail              string   `json:"mail"`
	UserPrincipalName string   `json:"userPrincipalName"`
	MobilePhone       string   `json:"mobilePhone"`
	BusinessPhones    []string `json:"businessPhones"`
	Department        string   `json:"department"`
	JobTitle          string   `json:"jobTitle"`
	OfficeLocation    string   `json:"officeLocation"`
	EmployeeID        string   `json:"employeeId"`
	PreferredLanguage string   `json:"preferredLanguage"`
	AccountEnabled    bool     `json:"accountEnabled"`
	// ManagerID is the object id of the user's manager ("" for none).
	ManagerID string `json:"managerId"`
}

// Group is an Entra group. Membership is kept separately (see Server.Members).
type Group struct {
	ID              string   `json:"id"`
	DisplayName     string   `json:"displayName"`
	Description     string   `json:"description"`
	Mail            string   `json:"mail"`
	MailNickname    string   `json:"mailNickname"`
	MailEnabled     bool     `json:"mailEnabled"`
	SecurityEnabled bool     `json:"securityEnabled"`
	GroupTypes      []string `json:"groupTypes"`
}

// Member is one direct member of a group.
type Member struct {
	ID      string `json:"id"`
	IsGroup bool   `json:"isGroup"`
}

type objState uint8

const (
	stateActive objState = iota
	stateSoftDeleted
	stateGone // permanently deleted
)

type userRec struct {
	User
	idx   int32
	state objState
}

type memberRef struct {
	idx     int32
	isGroup bool
}

type groupRec struct {
	Group
	idx     int32
	state   objState
	created time.Time
	members []memberRef
}

// change is one entry of a tenant's ordered change log. Delta tokens are positions in the log.
type change struct {
	group bool
	idx   int32  // user or group index
	mask  uint64 // changed properties (the u…/g… property bits)
	// For membership changes (group == true, mask has gMembers): the member and whether it left.
	member     memberRef
	removed    bool
	oldManager int32 // for manager changes: previous manager idx, -1 for none
}

type tenant struct {
	id, domain string
	epoch      int // bumped by ResetDelta; tokens of older epochs get 410 Gone

	users    []*userRec // creation order, never shrinks (gone users stay as tombstones)
	userIDs  map[string]int32
	upns     map[string]int32 // lower-cased UPN
	groups   []*groupRec
	groupIDs map[string]int32

	log []change
	// notified is the log position up to which change notifications were queued
	// (dirChangedLocked, when a mutation releases the state lock).
	notified int

	// consented apps: client id -> granted role names
	consents  map[string][]string
	consentAt map[string]time.Time
	graphSP   string // object id of the Microsoft Graph service principal in this tenant

	// caches, dropped on every mutation
	version     int
	transitive  map[int32][]memberRef
	transitiveV int
	rounds      map[roundKey][]roundItem
}

func newTenant(id, domain string) *tenant {
	return &tenant{
		id: id, domain: domain,
		userIDs: map[string]int32{}, upns: map[string]int32{}, groupIDs: map[string]int32{},
		consents: map[string][]string{}, consentAt: map[string]time.Time{}, graphSP: uuidFrom(id, "graph-sp"),
	}
}

func (t *tenant) touch() { t.version++ }

func (t *tenant) logChange(c change) {
	t.log = append(t.log, c)
	t.touch()
}

// dirObject is a stored user or group.
type dirObject interface {
	status() objState
}

func (u *userRec) status() objState  { return u.state }
func (g *groupRec) status() objState { return g.state }

// byID finds a user or group by object id (in any case) in recs, indexed by ids; permanently
// deleted ones included.
func byID[R any](recs []R, ids map[string]int32, id string) (R, bool) {
	i, ok := ids[strings.ToLower(id)]
	if !ok {
		var zero R
		return zero, false
	}
	return recs[i], true
}

func (t *tenant) user(id string) (*userRec, bool)   { return byID(t.users, t.userIDs, id) }
func (t *tenant) group(id string) (*groupRec, bool) { return byID(t.groups, t.groupIDs, id) }

func (t *tenant) addUser(u User) *userRec {
	r := &userRec{User: u, idx: int32(len(t.users))}
	r.BusinessPhones = slices.Clone(u.BusinessPhones)
	t.users = append(t.users, r)
	t.userIDs[strings.ToLower(u.ID)] = r.idx
	if u.UserPrincipalName != "" {
		t.upns[strings.ToLower(u.UserPrincipalName)] = r.idx
	}
	return r
}

func (t *tenant) addGroup(g Group, now time.Time) *groupRec {
	r := &groupRec{Group: g, idx: int32(len(t.groups)), created: now}
	r.GroupTypes = slices.Clone(g.GroupTypes)
	t.groups = append(t.groups, r)
	t.groupIDs[strings.ToLower(g.ID)] = r.idx
	return r
}

func (t *tenant) memberID(m memberRef) string {
	if m.isGroup {
		return t.groups[m.idx].ID
	}
	return t.users[m.idx].ID
}

func (t *tenant) managerIdx(u *userRec) int32 {
	if u.ManagerID == "" {
		return -1
	}
	if i, ok := t.userIDs[strings.ToLower(u.ManagerID)]; ok {
		return i
	}
	return -1
}

// --- public state API ------------------------------------------------------------------------

// AddTenant creates an empty tenant. domain is its verified domain (e.g. "contoso.example");
// tokens can be requested with either the tenant id or the domain in the path.
func (s *Server) AddTenant(tenantID, domain string) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	tid := strings.ToLower(tenantID)
	if _, ok := s.tenants[tid]; ok {
		return
	}
	s.tenants[tid] = newTenant(tid, strings.ToLower(domain))
}

func (s *Server) tenantLocked(tenantID string) (*tenant, error) {
	t, ok := s.tenants[strings.ToLower(tenantID)]
	if !ok {
		return nil, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	return t, nil
}

// lockTenant takes the state lock and finds a tenant. On success the caller releases the lock
// with unlock, which first queues the change notifications of what the caller logged; on error
// the lock is not held.
func (s *Server) lockTenant(tenantID string) (t *tenant, unlock func(), err error) {
	s.init()
	s.mu.Lock()
	t, err = s.tenantLocked(tenantID)
	if err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	return t, func() { s.dirChangedLocked(t); s.mu.Unlock() }, nil
}

// objectLocked finds a user or group (kind names it in the error) that is not permanently
// deleted.
func objectLocked[R dirObject](s *Server, kind, tenantID, id string, find func(*tenant, string) (R, bool)) (*tenant, R, error) {
	var zero R
	t, err := s.tenantLocked(tenantID)
	if err != nil {
		return nil, zero, err
	}
	r, ok := find(t, id)
	if !ok || r.status() == stateGone {
		return nil, zero, fmt.Errorf("%s %q in tenant %q: %w", kind, id, tenantID, ErrNotFound)
	}
	return t, r, nil
}

// withObject runs fn under the state lock with a user or group that is not permanently deleted,
// and queues the change notifications of what fn logged.
func withObject[R dirObject](s *Server, kind, tenantID, id string, find func(*tenant, string) (R, bool), fn func(*tenant, R) error) error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, r, err := objectLocked(s, kind, tenantID, id, find)
	if err != nil {
		return err
	}
	defer s.dirChangedLocked(t) // runs before the unlock
	return fn(t, r)
}

// withUser runs fn under the state lock with a user that is not permanently deleted.
func (s *Server) withUser(tenantID, id string, fn func(*tenant, *userRec) error) error {
	return withObject(s, "user", tenantID, id, (*tenant).user, fn)
}

// withGroup runs fn under the state lock with a group that is not permanently deleted.
func (s *Server) withGroup(tenantID, id string, fn func(*tenant, *groupRec) error) error {
	return withObject(s, "group", tenantID, id, (*tenant).group, fn)
}

// addObject creates a user or group (kind) under the state lock: *id is given a new UUID when
// empty, an id the tenant already has in ids is refused, and add stores the object and returns
// its copy.
func addObject[T any](s *Server, kind, tenantID string, id *string, ids func(*tenant) map[string]int32, add func(*tenant) T) (T, error) {
	var zero T
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return zero, err
	}
	defer unlock()
	if *id == "" {
		*id = uuid.NewString()
	}
	if _, dup := ids(t)[strings.ToLower(*id)]; dup {
		return zero, fmt.Errorf("m365sim: %s id %q already exists", kind, *id)
	}
	return add(t), nil
}

// AddUser creates a user (a new id is assigned when u.ID is empty) and records it in the change
// log. It returns the stored user.
func (s *Server) AddUser(tenantID string, u User) (User, error) {
	return addObject(s, "user", tenantID, &u.ID, func(t *tenant) map[string]int32 { return t.userIDs }, func(t *tenant) User {
		r := t.addUser(u)
		t.logChange(change{idx: r.idx, mask: userAllProps, oldManager: -1})
		return cloneUser(r.User)
	})
}

// UpdateUser changes a user through fn and logs exactly the properties fn changed.
func (s *Server) UpdateUser(tenantID, id string, fn func(*User)) error {
	return s.withUser(tenantID, id, func(t *tenant, u *userRec) error {
		s.updateUserLocked(t, u, fn)
		return nil
	})
}

func (s *Server) updateUserLocked(t *tenant, u *userRec, fn func(*User)) {
	before := cloneUser(u.User)
	oldMgr := t.managerIdx(u)
	next := cloneUser(u.User)
	fn(&next)
	next.ID = before.ID // ids never change
	mask := diffUser(&before, &next)
	if mask == 0 {
		return
	}
	if before.UserPrincipalName != next.UserPrincipalName {
		delete(t.upns, strings.ToLower(before.UserPrincipalName))
		if next.UserPrincipalName != "" {
			t.upns[strings.ToLower(next.UserPrincipalName)] = u.idx
		}
	}
	u.User = next
	t.logChange(change{idx: u.idx, mask: mask, oldManager: oldMgr})
}

// SetAccountEnabled enables or disables a user's account.
func (s *Server) SetAccountEnabled(tenantID, id string, enabled bool) error {
	return s.UpdateUser(tenantID, id, func(u *User) { u.AccountEnabled = enabled })
}

// SoftDeleteUser moves a user to deleted items: users/delta reports it with
// "@removed": {"reason": "changed"}; memberships are kept (as in Entra) but the user is not
// listed by /users or member listings while deleted.
func (s *Server) SoftDeleteUser(tenantID, id string) error {
	return s.setUserState(tenantID, id, stateSoftDeleted)
}

// RestoreUser brings a soft-deleted user back; delta reports it again as a full object.
func (s *Server) RestoreUser(tenantID, id string) error {
	return s.setUserState(tenantID, id, stateActive)
}

// HardDeleteUser deletes a user permanently ("@removed": {"reason": "deleted"}) and removes it
// from every group (each removal is logged for groups/delta).
func (s *Server) HardDeleteUser(tenantID, id string) error {
	return s.setUserState(tenantID, id, stateGone)
}

func (s *Server) setUserState(tenantID, id string, st objState) error {
	return s.withUser(tenantID, id, func(t *tenant, u *userRec) error {
		if st == stateActive && u.state != stateSoftDeleted {
			return fmt.Errorf("m365sim: user %q is not deleted", id)
		}
		if st == u.state {
			return nil
		}
		u.state = st
		t.logChange(change{idx: u.idx, mask: userAllProps, oldManager: -1})
		if st == stateGone {
			delete(t.upns, strings.ToLower(u.UserPrincipalName))
			for _, g := range t.groups {
				if g.state != stateGone {
					t.removeMemberLocked(g, memberRef{idx: u.idx})
				}
			}
		}
		return nil
	})
}

// AddGroup creates a group (a new id is assigned when g.ID is empty), logged for groups/delta.
func (s *Server) AddGroup(tenantID string, g Group) (Group, error) {
	return addObject(s, "group", tenantID, &g.ID, func(t *tenant) map[string]int32 { return t.groupIDs }, func(t *tenant) Group {
		r := t.addGroup(g, s.now())
		t.logChange(change{group: true, idx: r.idx, mask: groupAllProps})
		return cloneGroup(r.Group)
	})
}

// RenameGroup changes a group's display name.
func (s *Server) RenameGroup(tenantID, id, displayName string) error {
	return s.withGroup(tenantID, id, func(t *tenant, g *groupRec) error {
		if g.DisplayName == displayName {
			return nil
		}
		g.DisplayName = displayName
		t.logChange(change{group: true, idx: g.idx, mask: gDisplayName})
		return nil
	})
}

// DeleteGroup deletes a group permanently (groups/delta: "@removed": {"reason": "deleted"});
// it is also removed from the groups it was a member of.
func (s *Server) DeleteGroup(tenantID, id string) error {
	return s.withGroup(tenantID, id, func(t *tenant, g *groupRec) error {
		g.state = stateGone
		t.logChange(change{group: true, idx: g.idx, mask: groupAllProps})
		for _, p := range t.groups {
			if p.state != stateGone {
				t.removeMemberLocked(p, memberRef{idx: g.idx, isGroup: true})
			}
		}
		return nil
	})
}

// AddMember adds a user or group (by object id) as a direct member of a group.
func (s *Server) AddMember(tenantID, groupID, memberID string) error {
	return s.withMember(tenantID, groupID, memberID, func(t *tenant, g *groupRec, m memberRef) error {
		if m.isGroup && m.idx == g.idx {
			return fmt.Errorf("m365sim: a group cannot be a member of itself")
		}
		if slices.Contains(g.members, m) {
			return nil
		}
		g.members = append(g.members, m)
		t.logChange(change{group: true, idx: g.idx, mask: gMembers, member: m})
		return nil
	})
}

// RemoveMember removes a direct member from a group.
func (s *Server) RemoveMember(tenantID, groupID, memberID string) error {
	return s.withMember(tenantID, groupID, memberID, func(t *tenant, g *groupRec, m memberRef) error {
		if !t.removeMemberLocked(g, m) {
			return fmt.Errorf("%q is not a member of group %q: %w", memberID, groupID, ErrNotFound)
		}
		return nil
	})
}

// withMember runs fn under the state lock with the group and the member it names.
func (s *Server) withMember(tenantID, groupID, memberID string, fn func(*tenant, *groupRec, memberRef) error) error {
	return s.withGroup(tenantID, groupID, func(t *tenant, g *groupRec) error {
		m, err := t.resolveMember(memberID)
		if err != nil {
			return err
		}
		return fn(t, g, m)
	})
}

func (t *tenant) resolveMember(id string) (memberRef, error) {
	if u, ok := t.user(id); ok && u.state != stateGone {
		return memberRef{idx: u.idx}, nil
	}
	if g, ok := t.group(id); ok && g.state != stateGone {
		return memberRef{idx: g.idx, isGroup: true}, nil
	}
	return memberRef{}, fmt.Errorf("directory object %q: %w", id, ErrNotFound)
}

func (t *tenant) removeMemberLocked(g *groupRec, m memberRef) bool {
	i := slices.Index(g.members, m)
	if i < 0 {
		return false
	}
	g.members = slices.Delete(g.members, i, i+1)
	t.logChange(change{group: true, idx: g.idx, mask: gMembers, member: m, removed: true})
	return true
}

// Users returns the tenant's users that are not deleted, in creation order (an empty slice when
// there are none).
func (s *Server) Users(tenantID string) []User {
	return activeCopies(s, tenantID, []User{}, func(t *tenant) []*userRec { return t.users }, func(u *userRec) User { return cloneUser(u.User) })
}

// User returns one user that is not deleted.
func (s *Server) User(tenantID, id string) (User, bool) {
	var out User
	err := s.withUser(tenantID, id, func(_ *tenant, u *userRec) error {
		if u.state != stateActive {
			return ErrNotFound
		}
		out = cloneUser(u.User)
		return nil
	})
	return out, err == nil
}

// Groups returns the tenant's groups that are not deleted, in creation order (nil when there are
// none).
func (s *Server) Groups(tenantID string) []Group {
	return activeCopies(s, tenantID, nil, func(t *tenant) []*groupRec { return t.groups }, func(g *groupRec) Group { return cloneGroup(g.Group) })
}

// activeCopies appends to out copies of the tenant's users or groups (recs) that are not
// deleted, in creation order; it returns nil for an unknown tenant.
func activeCopies[R dirObject, T any](s *Server, tenantID string, out []T, recs func(*tenant) []R, clone func(R) T) []T {
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return nil
	}
	defer unlock()
	for _, r := range recs(t) {
		if r.status() == stateActive {
			out = append(out, clone(r))
		}
	}
	return out
}

// Members returns a group's direct members (including soft-deleted users, as Entra keeps them).
func (s *Server) Members(tenantID, groupID string) ([]Member, error) {
	var out []Member
	err := s.withGroup(tenantID, groupID, func(t *tenant, g *groupRec) error {
		out = make([]Member, len(g.members))
		for i, m := range g.members {
			out[i] = Member{ID: t.memberID(m), IsGroup: m.isGroup}
		}
		return nil
	})
	return out, err
}

// TransitiveUserIDs returns the ids of the active users that are members of a group directly or
// through nested groups, without duplicates, in the order /transitiveMembers lists them.
func (s *Server) TransitiveUserIDs(tenantID, groupID string) ([]string, error) {
	var out []string
	err := s.withGroup(tenantID, groupID, func(t *tenant, g *groupRec) error {
		for _, m := range t.transitiveMembers(g) {
			if !m.isGroup {
				out = append(out, t.users[m.idx].ID)
			}
		}
		return nil
	})
	return out, err
}

// transitiveMembers flattens nested groups breadth first, skipping cycles, deleted users and
// deleted groups. Results are cached until the next mutation.
func (t *tenant) transitiveMembers(g *groupRec) []memberRef {
	if t.transitive == nil || t.transitiveV != t.version {
		t.transitive = map[int32][]memberRef{}
		t.transitiveV = t.version
	}
	if r, ok := t.transitive[g.idx]; ok {
		return r
	}
	seenU := map[int32]bool{}
	seenG := map[int32]bool{g.idx: true}
	var out []memberRef
	queue := []int32{g.idx}
	for len(queue) > 0 {
		cur := t.groups[queue[0]]
		queue = queue[1:]
		for _, m := range cur.members {
			if m.isGroup {
				if seenG[m.idx] || t.groups[m.idx].state != stateActive {
					continue
				}
				seenG[m.idx] = true
				out = append(out, m)
				queue = append(queue, m.idx)
				continue
			}
			if seenU[m.idx] || t.users[m.idx].state != stateActive {
				continue
			}
			seenU[m.idx] = true
			out = append(out, m)
		}
	}
	t.transitive[g.idx] = out
	return out
}

func cloneUser(u User) User {
	u.BusinessPhones = cloneList(u.BusinessPhones)
	return u
}

func cloneGroup(g Group) Group {
	g.GroupTypes = cloneList(g.GroupTypes)
	return g
}

// cloneList copies a list property; a missing one becomes empty (Graph answers [], not null).
func cloneList(l []string) []string {
	if l = slices.Clone(l); l == nil {
		return []string{}
	}
	return l
}
