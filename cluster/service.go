package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Service is the sessions service of the whole cluster, for the HTTP API
// on any node: per-session requests go to the session's grain on its
// node, the fleet is every member's, each status naming its node.
type Service struct{ n *Node }

var (
	_ sessions.Service    = (*Service)(nil)
	_ sessions.Messenger  = (*Service)(nil)
	_ sessions.TestDriver = (*Service)(nil)
)

// Service is the cluster's sessions service, served through this node.
func (n *Node) Service() *Service { return &Service{n: n} }

// onGrainAs is onGrain with the reply decoded into a T.
func onGrainAs[T any](ctx context.Context, s *Service, id, op string, args any) (T, error) {
	var out T
	err := s.onGrain(ctx, id, op, args, &out)
	return out, err
}

// onGrain sends op on session id to its grain and decodes the result
// into out (when not nil).
func (s *Service) onGrain(ctx context.Context, id, op string, args any, out any) error {
	pid, err := s.n.activate(ctx, id)
	if err != nil {
		return err
	}
	req := request{Op: op, ID: id}
	if args != nil {
		req.Args = mustJSON(args)
	}
	r, err := s.n.call(ctx, pid, req)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return jsonUnmarshal(r.Result, out)
}

func jsonUnmarshal(b json.RawMessage, out any) error {
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode a reply: %w", err)
	}
	return nil
}

// Status is session id's status, from its node.
func (s *Service) Status(ctx context.Context, id string) (sessions.Status, error) {
	return onGrainAs[sessions.Status](ctx, s, id, opStatus, nil)
}

// Create creates or starts session id on its node.
func (s *Service) Create(ctx context.Context, id string) (sessions.CreateResult, error) {
	return onGrainAs[sessions.CreateResult](ctx, s, id, opCreate, nil)
}

// Stop stops session id on its node.
func (s *Service) Stop(ctx context.Context, id string) (sessions.Status, error) {
	return onGrainAs[sessions.Status](ctx, s, id, opStop, nil)
}

// Delete deletes session id on its node.
func (s *Service) Delete(ctx context.Context, id string) error {
	return s.onGrain(ctx, id, opDelete, nil, nil)
}

// Logout unlinks session id on its node.
func (s *Service) Logout(ctx context.Context, id string) (sessions.Status, error) {
	return onGrainAs[sessions.Status](ctx, s, id, opLogout, nil)
}

// QR is session id's pairing code, from its node.
func (s *Service) QR(ctx context.Context, id string) (sessions.QR, error) {
	return onGrainAs[sessions.QR](ctx, s, id, opQR, nil)
}

// PairPhone asks session id's node for a pairing code for phone.
func (s *Service) PairPhone(ctx context.Context, id, phone string) (string, error) {
	return onGrainAs[string](ctx, s, id, opPairPhone, phone)
}

// Send sends req through session id on its node.
func (s *Service) Send(ctx context.Context, id string, req sessions.SendRequest) (sessions.SentMessage, error) {
	return onGrainAs[sessions.SentMessage](ctx, s, id, opSend, sendArgs{Req: req, Key: req.IdempotencyKey})
}

// MarkRead marks a message read through session id on its node.
func (s *Service) MarkRead(ctx context.Context, id string, req sessions.ReadRequest) error {
	return s.onGrain(ctx, id, opMarkRead, readArgs{Req: req, ID: req.ID}, nil)
}

// Act runs a test action on session id on its node (test mode). Its
// result comes back as JSON.
func (s *Service) Act(ctx context.Context, id, action string, params sessions.TestParams) (any, error) {
	var out json.RawMessage
	err := s.onGrain(ctx, id, opAct, actArgs{Action: action, Params: params}, &out)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Ping checks that this node's own service answers.
func (s *Service) Ping(ctx context.Context) error { return s.n.opts.Local.Ping(ctx) }

// Restore restores ids (every active session when none) on their nodes.
func (s *Service) Restore(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		all, err := s.n.opts.Registry.Active(ctx)
		if err != nil {
			return fmt.Errorf("list sessions: %w", err)
		}
		if len(all) == 0 {
			return nil
		}
		ids = all
	}
	groups, err := s.n.placeAll(ctx, ids)
	if err != nil {
		return err
	}
	if _, ok := groups[""]; ok {
		return ErrNoNode
	}
	for addr, group := range groups {
		if _, err := s.n.call(ctx, nodePIDAt(addr), request{Op: opRestore, IDs: group}); err != nil {
			return err
		}
	}
	return nil
}

// Fleet is every member's fleet: the sessions of all, each status with
// its node, counts summed, restore progress combined. A member that does
// not answer in time is left out (and logged): the fleet of the others
// is still the best answer.
func (s *Service) Fleet(ctx context.Context) (sessions.Fleet, error) {
	members := s.n.Members()
	type part struct {
		node  string
		fleet sessions.Fleet
		err   error
	}
	parts := make([]part, len(members))
	var wg sync.WaitGroup
	for i, addr := range members {
		wg.Go(func() {
			r, err := s.n.call(ctx, nodePIDAt(addr), request{Op: opFleet})
			if err == nil {
				err = jsonUnmarshal(r.Result, &parts[i].fleet)
			}
			parts[i].node, parts[i].err = r.Node, err
		})
	}
	wg.Wait()
	out := sessions.Fleet{Sessions: []sessions.Status{}, Counts: map[sessions.State]int{}}
	answered := 0
	allFinished := true
	for i, p := range parts {
		if p.err != nil {
			s.n.log.Warn("cluster: a member's fleet is missing", "member", members[i], "err", p.err)
			continue
		}
		answered++
		for _, st := range p.fleet.Sessions {
			st.Node = p.node
			out.Sessions = append(out.Sessions, st)
		}
		for state, c := range p.fleet.Counts {
			out.Counts[state] += c
		}
		combineRestore(&out.Restore, p.fleet.Restore, &allFinished)
	}
	if answered == 0 {
		if err := ctx.Err(); err != nil {
			return sessions.Fleet{}, err
		}
		return sessions.Fleet{}, sessions.Errorf(sessions.ErrTimeout, "no node answered with its sessions in time")
	}
	if !allFinished {
		out.Restore.Finished = nil
	}
	slices.SortFunc(out.Sessions, func(a, b sessions.Status) int { return strings.Compare(a.SenderID, b.SenderID) })
	return out, nil
}

// combineRestore adds one node's restore progress to the cluster's: the
// earliest start, the latest finish (none while any node is not
// finished), the counts summed.
func combineRestore(to *sessions.RestoreProgress, p sessions.RestoreProgress, allFinished *bool) {
	if p.Started != nil && (to.Started == nil || p.Started.Before(*to.Started)) {
		t := *p.Started
		to.Started = &t
	}
	if p.Started != nil && p.Finished == nil {
		*allFinished = false
	}
	if p.Finished != nil && (to.Finished == nil || p.Finished.After(*to.Finished)) {
		t := *p.Finished
		to.Finished = &t
	}
	to.Found += p.Found
	to.Restored += p.Restored
	to.NeedsPairing += p.NeedsPairing
	to.Failed += p.Failed
	to.Pending += p.Pending
}
