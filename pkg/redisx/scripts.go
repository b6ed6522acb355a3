package redisx

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ScriptCall is one evaluation of a Lua script: its keys and arguments.
type ScriptCall struct {
	Script *redis.Script
	Keys   []string
	Args   []any
}

// Pipelining is what RunScripts needs of a client: pipelines (a
// redis.UniversalClient, *redis.Client or *redis.ClusterClient has them).
type Pipelining interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// RunScripts sends the calls in one pipeline by hash (EVALSHA), and then,
// in a second pipeline, the source (EVAL) of only those calls that met
// NOSCRIPT. A Redis that restarted or failed over to a replica starts with
// an empty script cache, so any call may meet NOSCRIPT; such a call ran
// nothing, and only it is sent again, so no script runs twice, and the
// scripts need not be idempotent. A cluster client splits each pipeline by
// slot, so the calls may name keys of any slots (each call's keys one
// slot).
//
// after (may be nil) adds commands behind the scripts in each pipeline
// sent, so they may run twice and must be idempotent.
//
// It returns each call's reply and error, in call order. A call's error is
// its own when it has one (a script error fails that call only); else an
// error of the pipeline that is not NOSCRIPT and no script call's own (the
// connection's, or an after command's) is that call's error too.
func RunScripts(ctx context.Context, rdb Pipelining, calls []ScriptCall, after func(redis.Pipeliner)) ([]any, []error) {
	res, errs := make([]any, len(calls)), make([]error, len(calls))
	pending := make([]int, len(calls))
	for i := range pending {
		pending[i] = i
	}
	for try := 0; try < 2 && len(pending) > 0; try++ {
		cmds := make([]*redis.Cmd, len(pending))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, i := range pending {
				c := calls[i]
				if try == 0 {
					cmds[j] = c.Script.EvalSha(ctx, p, c.Keys, c.Args...)
				} else {
					cmds[j] = c.Script.Eval(ctx, p, c.Keys, c.Args...)
				}
			}
			if after != nil {
				after(p)
			}
			return nil
		})
		if isOwnError(err, cmds) {
			err = nil
		}
		var again []int
		for j, i := range pending {
			cerr := cmds[j].Err()
			if cerr == nil && err != nil {
				cerr = err
			}
			if try == 0 && IsNoScript(cerr) {
				again = append(again, i)
				continue
			}
			res[i], errs[i] = cmds[j].Val(), cerr
		}
		pending = again
	}
	return res, errs
}

// isOwnError reports whether a pipeline's error is nil, NOSCRIPT, or the
// error of one of its script calls (go-redis reports a pipeline's first
// failed command's error as the pipeline's).
func isOwnError(err error, cmds []*redis.Cmd) bool {
	if err == nil || IsNoScript(err) {
		return true
	}
	for _, c := range cmds {
		if cerr := c.Err(); cerr != nil && errors.Is(err, cerr) {
			return true
		}
	}
	return false
}

// IsNoScript reports whether err is Redis' NOSCRIPT reply: the script's
// hash is not in the server's script cache.
func IsNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// FirstError returns the first non-nil error of errs, or nil.
func FirstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// MaxKeysPerCall bounds the keys of one RunForKeys call on a standalone
// Redis: a script blocks the server while it runs.
const MaxKeysPerCall = 500

// RunForKeys runs a script written for many keys over keys, as few calls
// as it may: on a standalone Redis up to MaxKeysPerCall keys to a call, on
// a Redis Cluster one key to a call (keys of other slots cannot share one).
// The script reads KEYS[i] with its arity arguments, ARGV[(i-1)*arity+1]
// to ARGV[i*arity] (args holds them in that order), and returns a table of
// one entry per key (never nil: Lua ends a table at its first nil). It
// returns each key's entry in the order of keys. Run once per key
// instead, such a script costs Redis a command of its own per key (its
// parsing, dispatch and reply), which is most of a call that does little.
// after, when set, queues more commands in the same round trip, after the
// script calls, as RunScripts does.
func RunForKeys(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, keys []string, args []any, arity int, after func(redis.Pipeliner)) ([]any, error) {
	if len(args) != len(keys)*arity {
		return nil, fmt.Errorf("redisx: %d arguments for %d keys of arity %d", len(args), len(keys), arity)
	}
	size := MaxKeysPerCall
	if _, cluster := rdb.(*redis.ClusterClient); cluster {
		size = 1
	}
	var calls []ScriptCall
	for lo := 0; lo < len(keys); lo += size {
		hi := min(lo+size, len(keys))
		calls = append(calls, ScriptCall{Script: script, Keys: keys[lo:hi], Args: args[lo*arity : hi*arity]})
	}
	replies, errs := RunScripts(ctx, rdb, calls, after)
	if err := FirstError(errs); err != nil {
		return nil, err
	}
	out := make([]any, 0, len(keys))
	for j, r := range replies {
		entries, _ := r.([]any)
		if len(entries) != len(calls[j].Keys) {
			return nil, fmt.Errorf("redisx: script %s answered %d entries for %d keys", script.Hash(), len(entries), len(calls[j].Keys))
		}
		out = append(out, entries...)
	}
	return out, nil
}
