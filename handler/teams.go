package main

import (
	"context"

	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/teamsconn"
)

// teamsGraph is the Graph client's Teams half in the plain types of teamsconn.
type teamsGraph struct{ g *graph.Client }

func (t teamsGraph) Teams(ctx context.Context, tenantID, search, pageToken string) ([]teamsconn.Team, string, error) {
	page, next, err := t.g.Teams(ctx, tenantID, search, pageToken)
	if err != nil {
		return nil, "", err
	}
	out := make([]teamsconn.Team, len(page))
	for i, tm := range page {
		out[i] = teamsconn.Team{ID: tm.ID, DisplayName: tm.DisplayName, Description: tm.Description}
	}
	return out, next, nil
}

func (t teamsGraph) Channels(ctx context.Context, tenantID, teamID string) ([]teamsconn.ChannelInfo, error) {
	chans, err := t.g.Channels(ctx, tenantID, teamID)
	if err != nil {
		return nil, err
	}
	out := make([]teamsconn.ChannelInfo, len(chans))
	for i, c := range chans {
		out[i] = teamsconn.ChannelInfo{ID: c.ID, DisplayName: c.DisplayName, MembershipType: c.MembershipType}
	}
	return out, nil
}

func (t teamsGraph) ChannelNames(ctx context.Context, tenantID, teamID string) (string, map[string]string, error) {
	chans, err := t.g.Channels(ctx, tenantID, teamID)
	if err != nil {
		return "", nil, err
	}
	names := make(map[string]string, len(chans))
	for _, c := range chans {
		names[c.ID] = c.DisplayName
	}
	return "", names, nil
}

func (t teamsGraph) AppCatalogID(ctx context.Context, tenantID, externalID string) (string, error) {
	return t.g.AppCatalogID(ctx, tenantID, externalID)
}

// tokenRoles reads granted permissions from a fresh app-only token.
type tokenRoles struct{ c *m365auth.Credentials }

func (r tokenRoles) Roles(ctx context.Context, tenantID string) ([]string, error) {
	return r.c.FreshRoles(ctx, tenantID)
}
