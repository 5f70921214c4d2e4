package dirsync

import (
	"strings"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/stakeholder"
)

// valuesOf maps an Entra user to stakeholder fields: givenName → first name, surname → last
// name, mail (else UPN) → email, mobilePhone (else the first business phone) → phone,
// department, jobTitle → role, officeLocation → location, manager → manager. problem is set
// when the user lacks what a stakeholder needs (a name and an address).
func valuesOf(u entra.User) (v stakeholder.Values, problem string) {
	v = stakeholder.Values{
		stakeholder.FirstName:  strings.TrimSpace(u.GivenName),
		stakeholder.LastName:   strings.TrimSpace(u.Surname),
		stakeholder.Email:      strings.TrimSpace(u.Mail),
		stakeholder.Phone:      strings.TrimSpace(u.MobilePhone),
		stakeholder.Department: strings.TrimSpace(u.Department),
		stakeholder.Role:       strings.TrimSpace(u.JobTitle),
		stakeholder.Location:   strings.TrimSpace(u.OfficeLocation),
		stakeholder.Manager:    u.ManagerID,
	}
	if v[stakeholder.Email] == "" {
		v[stakeholder.Email] = strings.TrimSpace(u.UserPrincipalName)
	}
	if v[stakeholder.Phone] == "" && len(u.BusinessPhones) > 0 {
		v[stakeholder.Phone] = strings.TrimSpace(u.BusinessPhones[0])
	}
	if v[stakeholder.FirstName] == "" && v[stakeholder.LastName] == "" {
		// Some directories fill only displayName: split it rather than refuse the user.
		first, last, _ := strings.Cut(strings.TrimSpace(u.DisplayName), " ")
		v[stakeholder.FirstName], v[stakeholder.LastName] = first, strings.TrimSpace(last)
	}
	switch {
	case u.ID == "":
		return v, "the user has no object id"
	case v[stakeholder.FirstName] == "" && v[stakeholder.LastName] == "":
		return v, "the user has no given name, surname or display name"
	case v[stakeholder.Email] == "":
		return v, "the user has neither mail nor userPrincipalName"
	case !strings.Contains(v[stakeholder.Email], "@"):
		return v, "the user's address " + v[stakeholder.Email] + " is not an email address"
	}
	return v, ""
}

func displayName(v stakeholder.Values) string {
	return strings.TrimSpace(v[stakeholder.FirstName] + " " + v[stakeholder.LastName])
}
