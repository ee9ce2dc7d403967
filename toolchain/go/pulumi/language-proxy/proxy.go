package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// proxy serves every gRPC call: the ones in local itself, all others by passing them to the host.
type proxy struct {
	host  *grpc.ClientConn
	local map[string]answer
}

// An answer serves one call in the proxy (see unary).
type answer func(grpc.ServerStream) error

// frame is one message as bytes: the proxy passes messages on without decoding them, so nothing a newer
// CLI or an older host puts in them is lost on the way.
type frame struct{ payload []byte }

// rawCodec moves frames as they are. It is named "proto" so that both ends see the usual content type.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("rawCodec cannot marshal %T", v)
	}
	return f.payload, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("rawCodec cannot unmarshal into %T", v)
	}
	f.payload = append(f.payload[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// handle is the server's handler for every method (no service is registered).
func (p *proxy) handle(_ any, in grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(in)
	if !ok {
		return status.Error(codes.Internal, "no method name in the call")
	}
	if local, ok := p.local[method]; ok {
		return local(in)
	}
	return p.forward(method, in)
}

// forward makes the same call on the host and copies messages both ways until the host ends the call.
// Every method of the protocol is unary or server-streaming; a bidirectional stream carries both.
// The call's context carries the caller's deadline and cancellation to the host.
func (p *proxy) forward(method string, in grpc.ServerStream) error {
	ctx, cancel := context.WithCancel(in.Context())
	defer cancel()
	md, _ := metadata.FromIncomingContext(ctx)
	out, err := p.host.NewStream(metadata.NewOutgoingContext(ctx, md.Copy()),
		&grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}

	// Caller to host. A failed send means the host ended the call: its status arrives below.
	go func() {
		for {
			var f frame
			if err := in.RecvMsg(&f); err != nil {
				if errors.Is(err, io.EOF) {
					_ = out.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if out.SendMsg(&f) != nil {
				return
			}
		}
	}()

	// Host to caller, then the host's status (nil for OK) and trailer.
	for first := true; ; first = false {
		var f frame
		err := out.RecvMsg(&f)
		if first {
			if header, herr := out.Header(); herr == nil && len(header) > 0 {
				if err := in.SendHeader(header); err != nil {
					return err
				}
			}
		}
		if err != nil {
			in.SetTrailer(out.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := in.SendMsg(&f); err != nil {
			return err
		}
	}
}

// unary makes an answer of a unary method: it decodes the request, calls serve and encodes its response.
// An error that is not a gRPC status reaches the caller as codes.Unknown with its message.
func unary[Req, Resp proto.Message](newReq func() Req, serve func(context.Context, Req) (Resp, error)) answer {
	return func(in grpc.ServerStream) error {
		var f frame
		if err := in.RecvMsg(&f); err != nil {
			return err
		}
		req := newReq()
		if err := proto.Unmarshal(f.payload, req); err != nil {
			return status.Errorf(codes.InvalidArgument, "decoding the request: %v", err)
		}
		resp, err := serve(in.Context(), req)
		if err != nil {
			return err
		}
		payload, err := proto.Marshal(resp)
		if err != nil {
			return err
		}
		return in.SendMsg(&frame{payload: payload})
	}
}
