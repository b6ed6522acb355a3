package main

import (
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

func (c *client) getJSON(ctx context.Context, rawURL, token string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s", rawURL, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp.StatusCode, json.Unmarshal(body, out)
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
	u := strings.TrimRight(c.gateway, "/") + "/v1/events/" + url.PathEscape(eventID)
	if _, err := c.getJSON(ctx, u, c.apiKey, &out); err != nil {
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
	code, err := c.getJSON(ctx, u, "", &out)
	if code == http.StatusNotFound {
		return nil, fmt.Errorf("trace %s is not in Jaeger (not exported yet, or expired)", traceID)
	}
	if err != nil {
		return nil, err
	}
	if len(out.Errors) > 0 {
		return nil, fmt.Errorf("jaeger: %s", out.Errors[0].Msg)
	}
	if len(out.Data) == 0 || len(out.Data[0].Spans) == 0 {
		return nil, fmt.Errorf("trace %s is not in Jaeger", traceID)
	}
	return &out.Data[0], nil
}
