package dirsync

import (
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Stakeholder is the synced part of a stakeholder, as stored in table "stakeholders". Leap-only
// fields (influence, support level, interest) live in the same entity and are never written by
// sync: writes merge, so properties not listed here are kept.
type Stakeholder struct {
	FirstName  string    `json:"firstName"`
	LastName   string    `json:"lastName"`
	Email      string    `json:"email"`
	Phone      string    `json:"phone"`
	Department string    `json:"department"`
	Role       string    `json:"role"`
	Location   string    `json:"location"`
	ManagerID  string    `json:"managerExternalId"`
	ExternalID string    `json:"externalId"`
	Source     string    `json:"source"`
	Active     bool      `json:"active"`
	SyncedAt   time.Time `json:"syncedAt"`
}

// stakeholderKey is the row key of the stakeholder linked to an Entra object id.
func stakeholderKey(entraID string) string { return "e-" + tablestore.KeyEscape(entraID) }

// fromUser maps an Entra user to stakeholder fields; ok is false when the user lacks what a
// stakeholder needs (a name and an address), with the reason.
func fromUser(u entra.User, now time.Time) (s Stakeholder, problem string) {
	s = Stakeholder{
		FirstName:  strings.TrimSpace(u.GivenName),
		LastName:   strings.TrimSpace(u.Surname),
		Email:      strings.TrimSpace(u.Mail),
		Department: u.Department,
		Role:       u.JobTitle,
		Location:   u.OfficeLocation,
		ManagerID:  u.ManagerID,
		ExternalID: u.ID,
		Source:     "entra",
		Active:     u.AccountEnabled,
		SyncedAt:   now,
	}
	if s.Email == "" {
		s.Email = strings.TrimSpace(u.UserPrincipalName)
	}
	s.Phone = u.MobilePhone
	if s.Phone == "" && len(u.BusinessPhones) > 0 {
		s.Phone = u.BusinessPhones[0]
	}
	if s.FirstName == "" && s.LastName == "" {
		// Some directories only fill displayName; split it rather than refuse the user.
		if first, last, ok := strings.Cut(strings.TrimSpace(u.DisplayName), " "); ok {
			s.FirstName, s.LastName = first, last
		} else {
			s.FirstName = strings.TrimSpace(u.DisplayName)
		}
	}
	switch {
	case u.ID == "":
		return s, "the user has no object id"
	case s.FirstName == "" && s.LastName == "":
		return s, "the user has no given name, surname or display name"
	case s.Email == "":
		return s, "the user has neither mail nor userPrincipalName"
	}
	return s, ""
}
