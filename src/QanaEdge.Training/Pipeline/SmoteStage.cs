using System.Text.Json;
using QanaEdge.Training.Data;
using QanaEdge.Training.Engine;
using QanaEdge.Training.Evaluation;
using QanaEdge.Training.Network;
using QanaEdge.Training.Smote;

namespace QanaEdge.Training.Pipeline;

/// <summary>What the SMOTE stage did: per class real, safe-anchor and synthetic counts; validation macro-F1 around it.</summary>
public sealed record SmoteStageReport(int[] RealCounts, int[] SafeCounts, int[] SyntheticCounts,
    double ValMacroF1Before, double ValMacroF1Head, double ValMacroF1Finetune);

/// <summary>
/// Embedding-space SMOTE after the float phase (DESIGN.md): penultimate embeddings of the training split
/// (eval mode, no augmentation) → <see cref="EmbeddingSmote"/> synthesises minority-class embeddings →
/// the linear head alone is trained on real + synthetic embeddings ("smote-head", 5 epochs by default;
/// nothing else can change, the embeddings are fixed inputs) → the last block, the transform, SE and the
/// head are briefly fine-tuned on real, augmented images ("smote-finetune"), the stem and earlier blocks
/// frozen (run in inference mode, so their batch-norm statistics do not move either). Synthetic data are
/// never images. Both phases keep their best epoch by validation macro-F1, like every other phase; the
/// fine-tune is kept only if one of its epochs beats the SMOTE head (like the QAT phase).
/// </summary>
public static class SmoteStage
{
    private const ulong Salt = 0x5307E;

    public static SmoteStageReport Run(QanaNet net, ImageSet train, ImageSet val, TrainOptions o, Trainer trainer,
        TextWriter? log = null, Action<string>? say = null)
    {
        int k = net.Options.NumClasses, d = net.EmbeddingSize;
        var embeddings = Embeddings(net, train, o.BatchSize);
        var valEmbeddings = Embeddings(net, val, o.BatchSize);
        double before = MacroF1(net.Head, valEmbeddings, val.Labels);
        var smote = EmbeddingSmote.Generate(embeddings, d, train.Labels, k,
            new SmoteOptions { Seed = o.Seed, TargetFraction = o.SmoteTargetFraction });
        say?.Invoke($"smote: {smote.Count} synthetic embeddings of {d} values; per class real/safe/synthetic " +
                    string.Join(" ", Enumerable.Range(0, k).Select(c => $"{Model.Classes.Codes[c]} {smote.RealCounts[c]}/{smote.SafeCounts[c]}/{smote.SyntheticCounts[c]}")));

        var all = new float[embeddings.Length + smote.Samples.Length];
        embeddings.CopyTo(all, 0);
        smote.Samples.CopyTo(all, embeddings.Length);
        var labels = train.Labels.Concat(smote.Labels).ToArray();
        embeddings = []; // the combined copy is all that is needed from here on
        double head = TrainHead(net.Head, all, labels, valEmbeddings, val.Labels, o, o.SmoteHeadEpochs, log, say);
        say?.Invoke($"smote-head: validation macro-F1 {before:F3} -> {head:F3}");

        double finetune = head;
        if (o.SmoteFinetuneEpochs > 0)
        {
            var top = new TopFinetune(net);
            finetune = trainer.Fit("smote-finetune", top, train, val, o.SmoteFinetuneEpochs, o.SmoteFinetuneLearningRate,
                () => NetState.Capture(net), s => ((NetState)s).Restore(net), o.SmoteFinetuneEpochs, 0, seedSalt: Salt, startScore: head);
            say?.Invoke($"smote-finetune: validation macro-F1 {head:F3} -> {finetune:F3}{(finetune > head ? "" : " (no epoch beat the SMOTE head: kept as it was)")}");
        }
        return new SmoteStageReport(smote.RealCounts, smote.SafeCounts, smote.SyntheticCounts, before, head, finetune);
    }

    /// <summary>Penultimate embeddings (row-major Count × <see cref="QanaNet.EmbeddingSize"/>) in inference mode.</summary>
    public static float[] Embeddings(QanaNet net, ImageSet set, int batch)
    {
        int d = net.EmbeddingSize, s = set.Size, per = s * s * 3;
        var result = new float[(long)set.Count * d];
        var tape = new Tape { Training = false };
        var x = new Tensor { RequiresGrad = false };
        for (int start = 0; start < set.Count; start += batch)
        {
            int n = Math.Min(batch, set.Count - start);
            x.Reshape(n, s, s, 3);
            Par.ForEach(n, i =>
            {
                var dst = x.Data.AsSpan(i * per, per);
                var src = set.Pixels[start + i];
                for (int j = 0; j < per; j++) dst[j] = src[j] * (1f / 255f);
            });
            var e = net.Top(tape, net.Trunk(tape, x, net.Blocks.Length), net.Blocks.Length);
            e.Data.AsSpan(0, n * d).CopyTo(result.AsSpan(start * d, n * d));
        }
        return result;
    }

    /// <summary>
    /// Trains <paramref name="head"/> alone on fixed embeddings: shuffled mini-batches (a seeded permutation per
    /// epoch), label-smoothed cross-entropy, AdamW with cosine decay. Keeps the epoch with the best validation
    /// macro-F1 and returns it. Each epoch is logged as phase "smote-head".
    /// </summary>
    public static double TrainHead(Dense head, float[] embeddings, int[] labels, float[] valEmbeddings, int[] valLabels,
        TrainOptions o, int epochs, TextWriter? log = null, Action<string>? say = null)
    {
        int d = head.In, n = labels.Length, batch = o.BatchSize;
        if (embeddings.Length != (long)n * d) throw new ArgumentException($"{embeddings.Length} values are not {n} embeddings of {d}");
        int batches = (n + batch - 1) / batch;
        var schedule = new CosineSchedule(o.SmoteHeadLearningRate, 0, (long)epochs * batches);
        var opt = new AdamW(head.Parameters) { WeightDecay = o.WeightDecay };
        var loss = new SoftmaxCrossEntropy { LabelSmoothing = o.LabelSmoothing };
        var tape = new Tape();
        var x = new Tensor { RequiresGrad = false };
        var y = new int[batch];
        float[] bestW = (float[])head.Weight.Value.Clone(), bestB = (float[])head.Bias.Value.Clone();
        double best = double.NegativeInfinity;
        long step = 0;
        for (int epoch = 1; epoch <= epochs; epoch++)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var order = Enumerable.Range(0, n).ToArray();
            var rng = SeededRandom.For(o.Seed ^ Salt, (ulong)epoch, 0x4EAD);
            for (int i = n - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
            double lossSum = 0; float lr = 0;
            for (int b = 0; b < batches; b++)
            {
                int start = b * batch, m = Math.Min(batch, n - start);
                x.Reshape(m, 1, 1, d);
                for (int i = 0; i < m; i++)
                {
                    int r = order[start + i];
                    embeddings.AsSpan(r * d, d).CopyTo(x.Data.AsSpan(i * d, d));
                    y[i] = labels[r];
                }
                tape.Training = true;
                var z = head.Forward(tape, x);
                float l = loss.Forward(z, y.AsSpan(0, m));
                if (!float.IsFinite(l)) throw new TrainingDivergedException("smote-head", epoch, b + 1, l); // as in Trainer.Fit
                lossSum += l * m;
                tape.Backward();
                lr = schedule.At(step++);
                opt.Step(lr);
            }
            var probs = Probabilities(head, valEmbeddings, valLabels.Length);
            var metrics = ClassificationMetrics.Compute(valLabels, probs);
            bool isBest = metrics.MacroF1 > best;
            if (isBest)
            {
                best = metrics.MacroF1;
                head.Weight.Value.CopyTo(bestW, 0);
                head.Bias.Value.CopyTo(bestB, 0);
            }
            var rec = new EpochRecord("smote-head", epoch, lossSum / n, lr, metrics.Top1, metrics.MacroF1, metrics.BalancedAccuracy,
                sw.Elapsed.TotalSeconds, n / Math.Max(1e-9, sw.Elapsed.TotalSeconds), isBest);
            log?.WriteLine(JsonSerializer.Serialize(rec, TrainingJson.Default.EpochRecord));
            log?.Flush();
            say?.Invoke($"smote-head epoch {epoch}/{epochs}: loss {lossSum / n:F4}, validation macro-F1 {metrics.MacroF1:F3}");
        }
        bestW.CopyTo(head.Weight.Value, 0);
        bestB.CopyTo(head.Bias.Value, 0);
        return best;
    }

    private static double MacroF1(Dense head, float[] embeddings, int[] labels) =>
        ClassificationMetrics.Compute(labels, Probabilities(head, embeddings, labels.Length)).MacroF1;

    /// <summary>Softmax of the head on fixed embeddings (inference mode).</summary>
    public static float[][] Probabilities(Dense head, float[] embeddings, int count)
    {
        int d = head.In, k = head.Out;
        var x = new Tensor(count, 1, 1, d) { RequiresGrad = false };
        embeddings.AsSpan(0, count * d).CopyTo(x.Data);
        var z = head.Forward(new Tape { Training = false }, x);
        var result = new float[count][];
        for (int i = 0; i < count; i++) result[i] = Trainer.Softmax(z.Data.AsSpan(i * k, k).ToArray());
        return result;
    }

    /// <summary>
    /// The last block, transform, SE and head as a trainable network: the stem and the earlier blocks run on a
    /// tape of their own in inference mode (no gradient, batch-norm running statistics untouched) and their
    /// output is copied into an input that needs no gradient.
    /// </summary>
    public sealed class TopFinetune(QanaNet net) : ITrainable
    {
        private readonly Tape _frozen = new() { Training = false };
        private readonly Tensor _mid = new() { RequiresGrad = false };
        private int Split => net.Blocks.Length - 1;

        public Tensor Forward(Tape tape, Tensor x)
        {
            var h = net.Trunk(_frozen, x, Split);
            _mid.Reshape(h.N, h.H, h.W, h.C);
            h.Data.AsSpan(0, h.Length).CopyTo(_mid.Data);
            return net.Head.Forward(tape, net.Top(tape, _mid, Split));
        }

        /// <summary>Everything after the frozen trunk.</summary>
        public IEnumerable<Layer> Layers
        {
            get
            {
                foreach (var l in net.Blocks[^1].Layers) yield return l;
                yield return net.TransformDw; yield return net.TransformPw; yield return net.TransformBn;
                if (net.Se is not null) foreach (var l in net.Se.Layers) yield return l;
                yield return net.Head;
            }
        }

        public IEnumerable<Parameter> Parameters => Layers.SelectMany(l => l.Parameters);
    }
}
