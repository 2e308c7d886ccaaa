package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
)

// StaticProvider is membership over a fixed list of peers (CLUSTER=static,
// protoactor's automanaged provider): each member serves its address and
// kinds on port (all interfaces, plain HTTP, GET /_health) and polls every
// peer's every second.
func StaticProvider(peers []string, port int) protocluster.ClusterProvider {
	return automanaged.NewWithConfig(time.Second, port, peers...)
}

// LoadTLS reads this node's certificate and key and the cluster's CA (PEM
// files) into a mutual-TLS configuration: a member presents its
// certificate and accepts only peers whose certificate the CA signed,
// both ways. Each certificate must name the host its node advertises.
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return TLSConfig(cert, caPEM)
}

// TLSConfig is LoadTLS's configuration from a loaded certificate and the
// CA's PEM.
func TLSConfig(cert tls.Certificate, caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("cluster CA: no PEM certificate in it")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}
