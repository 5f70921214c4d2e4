package m365sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// GenSpec describes a generated tenant population.
type GenSpec struct {
	Users  int
	Groups int
	// Depth is the group nesting depth: 0 flat; d > 0 puts groups on d+1 levels, each group
	// below the top a member of one group on the level above.
	Depth int
	Seed  uint64
	// InvalidUsers users get an incomplete profile (no givenName, surname, displayName or mail), for the
	// sync's invalid_data handling.
	InvalidUsers int
}

var (
	givenNames = strings.Fields(`Ines Tom Amara Lukas Sofia Mateo Yuki Priya Omar Chloe Jonas Aisha Noah Elena Kwame Hana Leo Mira Ravi Zoe
		Felix Nadia Hugo Lena Samir Ada Diego Freya Kenji Maya Emil Lucia Tariq Ingrid Pablo Mei Oskar Fatima Arjun Clara
		Malik Sara Theo Alma Ivan Rosa Nils Leila Marco Anya Bruno Esme Karim Ida Rafael Vera Otto Selin Hamza Julia`)
	surnames = strings.Fields(`Okafor Weber Mensah Novak Rossi Tanaka Sharma Haddad Dubois Berg Khan Silva Costa Petrov Nakamura
		Jensen Moreau Ivanova Fischer Garcia Kowalski Andersson Lopez Yilmaz Murphy Schmidt Bianchi Hansen Ortiz Kim
		Larsen Ahmed Fernandes Meyer Sato Nielsen Romero Popescu Wagner Lindqvist Mwangi Chen Alvarez Brennan Hoffmann
		Suzuki Kaur Dimitrov Laine Vargas`)
	departments = []string{"Operations", "Finance", "Human Resources", "Sales", "Marketing", "Engineering", "IT", "Legal", "Procurement", "Customer Service", "Research", "Logistics"}
	jobTitles   = []string{"Analyst", "Specialist", "Coordinator", "Manager", "Senior Manager", "Director", "Engineer", "Consultant", "Team Lead", "Associate", "Administrator", "Advisor"}
	offices     = []string{"London", "Berlin", "Paris", "Madrid", "Milan", "Warsaw", "Stockholm", "Dublin", "Amsterdam", "Lisbon", "Vienna", "Zurich"}
	languages   = []string{"en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "it-IT"}
)

// Generate fills a tenant with a deterministic population: the same spec and seed give the
// same ids and values. It does not touch the change log (a generated tenant is the initial
// state a first full sync reads). Users get managers (a tree), groups nest per Depth, each
// user is a direct member of one group (one in ten of two).
func (s *Server) Generate(tenantID string, spec GenSpec) error {
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15))
	id := func() string {
		var b [16]byte
		for i := 0; i < 16; i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		return formatUUID(b)
	}
	domain := t.domain
	if domain == "" {
		domain = t.id + ".example"
	}
	now := s.now()
	firstUser := int32(len(t.users))
	t.users = append(make([]*userRec, 0, len(t.users)+spec.Users), t.users...)
	for i := range spec.Users {
		given := givenNames[rng.IntN(len(givenNames))]
		sur := surnames[rng.IntN(len(surnames))]
		upn := strings.ToLower(given+"."+sur) + fmt.Sprintf(".%d@%s", i+1, domain)
		u := User{
			ID:                id(),
			DisplayName:       given + " " + sur,
			GivenName:         given,
			Surname:           sur,
			Mail:              upn,
			UserPrincipalName: upn,
			Department:        departments[rng.IntN(len(departments))],
			JobTitle:          jobTitles[rng.IntN(len(jobTitles))],
			OfficeLocation:    offices[rng.IntN(len(offices))],
			EmployeeID:        fmt.Sprintf("E%06d", i+1),
			PreferredLanguage: languages[rng.IntN(len(languages))],
			AccountEnabled:    rng.IntN(50) != 0, // 2% disabled
			BusinessPhones:    []string{fmt.Sprintf("+44 20 7946 %04d", rng.IntN(10000))},
		}
		if rng.IntN(3) != 0 {
			u.MobilePhone = fmt.Sprintf("+44 7700 9%05d", rng.IntN(100000))
		}
		if rng.IntN(20) == 0 {
			u.Mail = "" // mailbox-less account
		}
		if i > 0 {
			// managers come from the first eighth of earlier users: a tree a few levels deep
			u.ManagerID = t.users[firstUser+int32(rng.IntN(max(1, i/8)))].ID
		}
		if i >= spec.Users-spec.InvalidUsers {
			// No name of any kind: the mapping has nothing to call the stakeholder by.
			u.GivenName, u.Surname, u.Mail, u.BusinessPhones, u.DisplayName = "", "", "", nil, ""
		}
		t.addUser(u)
	}

	levels := spec.Depth + 1
	var byLevel [][]int32
	byLevel = make([][]int32, levels)
	firstGroup := len(t.groups)
	for i := range spec.Groups {
		dept := departments[i%len(departments)]
		city := offices[(i/len(departments))%len(offices)]
		name := fmt.Sprintf("%s - %s %d", dept, city, i+1)
		nick := strings.ToLower(strings.NewReplacer(" ", "", "-", "").Replace(dept)) + fmt.Sprintf("%d", i+1)
		g := Group{
			ID: id(), DisplayName: name, Description: fmt.Sprintf("%s team in %s", dept, city),
			MailNickname: nick, SecurityEnabled: true, GroupTypes: []string{},
		}
		if i%3 == 0 {
			g.GroupTypes = []string{"Unified"}
			g.MailEnabled = true
			g.Mail = nick + "@" + domain
		}
		gr := t.addGroup(g, now.Add(-time.Duration(spec.Groups-i)*time.Hour))
		lvl := i % levels
		byLevel[lvl] = append(byLevel[lvl], gr.idx)
		if lvl > 0 && len(byLevel[lvl-1]) > 0 {
			parent := t.groups[byLevel[lvl-1][rng.IntN(len(byLevel[lvl-1]))]]
			parent.members = append(parent.members, memberRef{idx: gr.idx, isGroup: true})
		}
	}
	if spec.Groups > 0 {
		for i := range spec.Users {
			u := firstUser + int32(i)
			gi := firstGroup + rng.IntN(spec.Groups)
			t.groups[gi].members = append(t.groups[gi].members, memberRef{idx: u})
			if rng.IntN(10) == 0 {
				gj := firstGroup + rng.IntN(spec.Groups)
				if gj != gi {
					t.groups[gj].members = append(t.groups[gj].members, memberRef{idx: u})
				}
			}
		}
	}
	t.touch()
	return nil
}

// MutateRandom changes about fraction of the active users (deterministically for a seed), the
// way a directory drifts between syncs: mostly attribute edits (job title, department,
// office, phone), some manager changes, disables, soft and hard deletes, and group moves.
// It returns the number of users changed.
func (s *Server) MutateRandom(tenantID string, fraction float64, seed uint64) (int, error) {
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return 0, err
	}
	defer unlock()
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	var active []*userRec
	for _, u := range t.users {
		if u.state == stateActive {
			active = append(active, u)
		}
	}
	n := int(float64(len(active))*fraction + 0.5)
	if n == 0 && fraction > 0 && len(active) > 0 {
		n = 1
	}
	rng.Shuffle(len(active), func(i, j int) { active[i], active[j] = active[j], active[i] })
	for _, u := range active[:n] {
		switch k := rng.IntN(100); {
		case k < 60:
			s.updateUserLocked(t, u, func(x *User) {
				switch rng.IntN(4) {
				case 0:
					x.JobTitle = jobTitles[rng.IntN(len(jobTitles))] + " II"
				case 1:
					x.Department = departments[rng.IntN(len(departments))]
				case 2:
					x.OfficeLocation = offices[rng.IntN(len(offices))]
				default:
					x.MobilePhone = fmt.Sprintf("+44 7700 8%05d", rng.IntN(100000))
				}
			})
		case k < 72:
			m := active[rng.IntN(len(active))]
			if m != u {
				s.updateUserLocked(t, u, func(x *User) { x.ManagerID = m.ID })
			}
		case k < 82:
			s.updateUserLocked(t, u, func(x *User) { x.AccountEnabled = !x.AccountEnabled })
		case k < 88:
			u.state = stateSoftDeleted
			t.logChange(change{idx: u.idx, mask: userAllProps, oldManager: -1})
		case k < 92:
			u.state = stateGone
			delete(t.upns, strings.ToLower(u.UserPrincipalName))
			t.logChange(change{idx: u.idx, mask: userAllProps, oldManager: -1})
			for _, g := range t.groups {
				if g.state != stateGone {
					t.removeMemberLocked(g, memberRef{idx: u.idx})
				}
			}
		default:
			if len(t.groups) == 0 {
				continue
			}
			for _, g := range t.groups {
				if g.state != stateGone && t.removeMemberLocked(g, memberRef{idx: u.idx}) {
					break
				}
			}
			g := t.groups[rng.IntN(len(t.groups))]
			if g.state == stateActive && !slices.Contains(g.members, memberRef{idx: u.idx}) {
				g.members = append(g.members, memberRef{idx: u.idx})
				t.logChange(change{group: true, idx: g.idx, mask: gMembers, member: memberRef{idx: u.idx}})
			}
		}
	}
	return n, nil
}
