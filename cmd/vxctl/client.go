package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

type client struct {
	http            *http.Client
	gateway, jaeger string
	apiKey          string
}

// apiError is a non-2xx answer. Its message is the google.rpc Status
// message when the body is one (the gateway's errors), else the body.
type apiError struct {
	status  string // "404 Not Found"
	code    int    // the HTTP status code
	message string
}

func (e *apiError) Error() string {
	if e.message == "" {
		return e.status
	}
	return e.status + ": " + e.message
}

func newAPIError(resp *http.Response, body []byte) *apiError {
	e := &apiError{status: resp.Status, code: resp.StatusCode}
	var st struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		e.message = st.Message
	} else {
		e.message = strings.TrimSpace(string(body))
	}
	if e.status == "" {
		e.status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return e
}

// do is the one HTTP exchange of vxctl: it sends in (when not nil) as
// JSON, with the bearer token when there is one, and decodes a 2xx answer
// into out (when not nil). Any other answer is an *apiError.
func (c *client) do(ctx context.Context, method, rawURL, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return newAPIError(resp, b)
	}
	if out == nil || len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, rawURL, err)
	}
	return nil
}

// rest calls the gateway's REST API: path below the gateway URL, query
// (may be nil) and the API key.
func (c *client) rest(ctx context.Context, method, path string, query url.Values, in, out any) error {
	if c.apiKey == "" {
		return errors.New("the REST API needs an API key: set VXCTL_API_KEY (or --api-key)")
	}
	u := strings.TrimRight(c.gateway, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return c.do(ctx, method, u, c.apiKey, in, out)
}

// eventTraceID reads an event's trace id from the REST API.
func (c *client) eventTraceID(ctx context.Context, eventID string) (string, error) {
	if c.apiKey == "" {
		return "", errors.New("looking up an event needs an API key: set VXCTL_API_KEY (or --api-key), or pass --trace-id")
	}
	var out struct {
		Event struct {
			ID      string `json:"id"`
			TraceID string `json:"traceId"`
		} `json:"event"`
	}
	if err := c.rest(ctx, http.MethodGet, "/v1/events/"+url.PathEscape(eventID), nil, nil, &out); err != nil {
		return "", fmt.Errorf("event %s: %w", eventID, err)
	}
	if out.Event.TraceID == "" {
		return "", fmt.Errorf("event %s has no trace id", eventID)
	}
	return out.Event.TraceID, nil
}

// trace fetches a trace from the Jaeger query API.
func (c *client) trace(ctx context.Context, traceID string) (*jaegerTrace, error) {
	var out struct {
		Data   []jaegerTrace `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	u := strings.TrimRight(c.jaeger, "/") + "/api/traces/" + url.PathEscape(traceID)
	err := c.do(ctx, http.MethodGet, u, "", nil, &out)
	if ae := (*apiError)(nil); errors.As(err, &ae) && ae.code == http.StatusNotFound {
		return nil, fmt.Errorf("trace %s is not in Jaeger (not exported yet, or expired)", traceID)
	}
	if err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	if len(out.Errors) > 0 {
		return nil, fmt.Errorf("jaeger: %s", out.Errors[0].Msg)
	}
	if len(out.Data) == 0 || len(out.Data[0].Spans) == 0 {
		return nil, fmt.Errorf("trace %s is not in Jaeger", traceID)
	}
	return &out.Data[0], nil
}
