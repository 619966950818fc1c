package karpenter

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	karpv1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	"sigs.k8s.io/karpenter/pkg/cloudprovider"
	"sigs.k8s.io/karpenter/pkg/cloudprovider/fake"
	"sigs.k8s.io/karpenter/pkg/scheduling"
)

// Labels the AWS provider (github.com/aws/karpenter-provider-aws, pkg/apis/v1) puts on its
// instance types and registers as well known in its init(). The provider module itself is not
// imported: it pulls the whole EC2 SDK into this test for a list of names.
const (
	awsDomain            = "karpenter.k8s.aws"
	labelInstanceFamily  = awsDomain + "/instance-family"
	labelInstanceSize    = awsDomain + "/instance-size"
	labelInstanceCPU     = awsDomain + "/instance-cpu"
	labelInstanceMemory  = awsDomain + "/instance-memory"
	labelGPUCount        = awsDomain + "/instance-gpu-count"
	labelGPUName         = awsDomain + "/instance-gpu-name"
	labelGPUManufacturer = awsDomain + "/instance-gpu-manufacturer"
	labelGPUMemory       = awsDomain + "/instance-gpu-memory"
	resourceNvidiaGPU    = corev1.ResourceName("nvidia.com/gpu")
)

func init() {
	karpv1.RestrictedLabelDomains = karpv1.RestrictedLabelDomains.Insert(awsDomain)
	karpv1.WellKnownLabels = karpv1.WellKnownLabels.Insert(labelInstanceFamily, labelInstanceSize,
		labelInstanceCPU, labelInstanceMemory, labelGPUCount, labelGPUName, labelGPUManufacturer,
		labelGPUMemory)
}

// g4dnSpec is one EC2 g4dn size: vCPUs, memory, T4 GPUs, the VPC CNI's max pods, and the
// us-east-1 on-demand Linux price per hour.
type g4dnSpec struct {
	size    string
	vcpu    int64
	memGiB  int64
	gpus    int64
	maxPods int64
	price   float64
}

// The sizes EC2 sells (metal included: it is what a pool without a GPU-count limit can pick).
var g4dnSizes = []g4dnSpec{
	{"xlarge", 4, 16, 1, 29, 0.526},
	{"2xlarge", 8, 32, 1, 29, 0.752},
	{"4xlarge", 16, 64, 1, 29, 1.204},
	{"8xlarge", 32, 128, 1, 58, 2.176},
	{"12xlarge", 48, 192, 4, 234, 3.912},
	{"16xlarge", 64, 256, 1, 58, 4.352},
	{"metal", 96, 384, 8, 737, 7.824},
}

var zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

// g4dnInstanceTypes builds the g4dn family with Karpenter's fake provider helpers, labelled and
// priced as the AWS provider would, and with the AWS provider's overhead formulas so that what
// fits on a node is what fits on a real one.
func g4dnInstanceTypes() []*cloudprovider.InstanceType {
	var its []*cloudprovider.InstanceType
	for _, s := range g4dnSizes {
		name := "g4dn." + s.size
		var offerings []cloudprovider.Offering
		for _, zone := range zones {
			offerings = append(offerings, cloudprovider.Offering{
				Available: true,
				Price:     s.price,
				Requirements: scheduling.NewLabelRequirements(map[string]string{
					karpv1.CapacityTypeLabelKey: karpv1.CapacityTypeOnDemand,
					corev1.LabelTopologyZone:    zone,
				}),
			})
		}
		it := fake.NewInstanceType(name,
			fake.WithResources(corev1.ResourceList{
				corev1.ResourceCPU:    *resource.NewQuantity(s.vcpu, resource.DecimalSI),
				corev1.ResourceMemory: resource.MustParse(fmt.Sprintf("%dGi", s.memGiB)),
				corev1.ResourcePods:   *resource.NewQuantity(s.maxPods, resource.DecimalSI),
				resourceNvidiaGPU:     *resource.NewQuantity(s.gpus, resource.DecimalSI),
			}),
			fake.WithOfferings(offerings...),
			fake.WithOperatingSystems(string(corev1.Linux)),
			fake.WithRequirements(
				scheduling.NewRequirement(labelInstanceFamily, corev1.NodeSelectorOpIn, "g4dn"),
				scheduling.NewRequirement(labelInstanceSize, corev1.NodeSelectorOpIn, s.size),
				scheduling.NewRequirement(labelInstanceCPU, corev1.NodeSelectorOpIn, fmt.Sprint(s.vcpu)),
				scheduling.NewRequirement(labelInstanceMemory, corev1.NodeSelectorOpIn, fmt.Sprint(s.memGiB*1024)),
				scheduling.NewRequirement(labelGPUCount, corev1.NodeSelectorOpIn, fmt.Sprint(s.gpus)),
				scheduling.NewRequirement(labelGPUName, corev1.NodeSelectorOpIn, "t4"),
				scheduling.NewRequirement(labelGPUManufacturer, corev1.NodeSelectorOpIn, "nvidia"),
				scheduling.NewRequirement(labelGPUMemory, corev1.NodeSelectorOpIn, "16384"),
			),
		)
		it.Overhead = &cloudprovider.InstanceTypeOverhead{
			KubeReserved: corev1.ResourceList{
				corev1.ResourceCPU:    kubeReservedCPU(s.vcpu),
				corev1.ResourceMemory: resource.MustParse(fmt.Sprintf("%dMi", 11*s.maxPods+255)),
			},
			EvictionThreshold: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("100Mi"),
			},
		}
		its = append(its, it)
	}
	return its
}

// kubeReservedCPU is the EKS AMI's (and the AWS provider's) CPU reservation: 6% of the first
// core, 1% of the second, 0.5% of the next two, 0.25% of the rest.
func kubeReservedCPU(vcpu int64) resource.Quantity {
	milli := 0.0
	for i := int64(0); i < vcpu; i++ {
		switch {
		case i == 0:
			milli += 60
		case i == 1:
			milli += 10
		case i < 4:
			milli += 5
		default:
			milli += 2.5
		}
	}
	return *resource.NewMilliQuantity(int64(math.Round(milli)), resource.DecimalSI)
}
