package runstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"

	"github.com/devvm/vault-token-renew/internal/atomicfile"
	"github.com/devvm/vault-token-renew/internal/ledger"
)

// ErrNoState means no run has recorded anything yet (the file is missing).
var ErrNoState = errors.New("no state recorded yet")

// ErrCorrupt means the state file exists but is not ours to read: the caller
// reports it once and replaces it with the next run's state.
var ErrCorrupt = errors.New("state file is unreadable")

// Load reads the state at path. A missing file is ErrNoState and a file that
// does not parse as a State is ErrCorrupt; both come with a zero State, so a
// caller can go on with Next from scratch.
func Load(path string) (State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, fmt.Errorf("%w: %w", ErrNoState, err)
	}
	if err != nil {
		return State{}, fmt.Errorf("read state %s: %w", path, err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	// A state with a ledger but no run yet is what a first run's heal
	// leaves before its outcome is folded in.
	noRunYet := s.Outcome == "" && s.Time.IsZero()
	if !noRunYet && (!s.Outcome.Known() || s.Time.IsZero()) {
		return State{}, fmt.Errorf("%w: %s: no run time or an unknown outcome %q", ErrCorrupt, path, s.Outcome)
	}
	return s, nil
}

// Update changes the state at path under a lock beside it (path+".lock"):
// a run writes its ledger as it goes and folds its outcome in at the end,
// and the two must never lose each other's change. fn gets the state as
// stored, or a zero State when there is none or it is unreadable (the
// caller reported that once, before the run).
func Update(path string, fn func(State) State) (State, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return State{}, fmt.Errorf("save state %s: %w", path, err)
	}
	lock := flock.New(path+".lock", flock.SetPermissions(0o600))
	if err := lock.Lock(); err != nil {
		return State{}, fmt.Errorf("lock state %s: %w", path, err)
	}
	defer lock.Unlock()
	prev, _ := Load(path)
	next := fn(prev)
	return next, Save(path, next)
}

// StateLedger keeps the ledger of the token file File in the state file at
// Path; renew reads it after taking File's run lock and saves it at every
// step of a heal.
type StateLedger struct{ Path, File string }

// Load returns the stored ledger; a missing or unreadable state is a zero
// Ledger, which is never whole: a gap the walk closes.
func (s StateLedger) Load() (ledger.Ledger, error) {
	st, err := Load(s.Path)
	if errors.Is(err, ErrNoState) {
		return ledger.Ledger{}, nil
	}
	return st.LedgerFor(s.File), err
}

// Spared are the accessors held by the ledgers of the other token files
// in the state: each file's own runs retire its stale tokens, never
// another file's walk.
func (s StateLedger) Spared() []string {
	st, err := Load(s.Path)
	if err != nil {
		return nil
	}
	key := LedgerKey(s.File)
	var out []string
	for k, l := range st.Ledgers {
		if k != key {
			out = append(out, l.Accessors()...)
		}
	}
	return out
}

// Fold applies fn to this token file's ledger as it is stored and saves
// the result, under the state file's lock, leaving the rest of the state
// (other token files' ledgers included) as it is; it returns the ledger
// saved. Two processes that change one ledger at once (a heal, and a walk
// of hours) each fold their change into what the other saved: neither's
// record is lost.
func (s StateLedger) Fold(fn func(ledger.Ledger) ledger.Ledger) (ledger.Ledger, error) {
	var out ledger.Ledger
	_, err := Update(s.Path, func(st State) State {
		out = fn(st.LedgerFor(s.File))
		ledgers := make(map[string]ledger.Ledger, len(st.Ledgers)+1)
		for k, v := range st.Ledgers {
			ledgers[k] = v
		}
		ledgers[LedgerKey(s.File)] = out
		st.Ledgers = ledgers
		return st
	})
	return out, err
}

// Save writes s to path with the project's atomic writer, so a crash or a
// concurrent reader (the login banner) never sees half a file. The directory
// is created private (0700): the file names our accessor and host. A failed
// directory sync after the rename still leaves the new state in place, which
// is all a state file needs, so it counts as success.
func Save(path string, s State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state for %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	err = atomicfile.Write(path, append(data, '\n'), 0o600)
	var dse *atomicfile.DirSyncError
	if err != nil && !errors.As(err, &dse) {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	return nil
}
