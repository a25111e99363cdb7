namespace QanaEdge.Runtime.Plan;

internal sealed partial class ConvOp
{
    public override bool HasOptimized => false;
    public override void EvalOptimized(ExecState s) => EvalReference(s);
}
