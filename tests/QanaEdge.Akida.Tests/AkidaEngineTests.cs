using System.Runtime.InteropServices;
using QanaEdge.Imaging;
using QanaEdge.Model.Packaging;
using QanaEdge.Runtime;
using QanaEdge.TestSupport;

namespace QanaEdge.Akida.Tests;

/// <summary>
/// AkidaEngine through the real [LibraryImport] path, against the emulated AKD1000 library (it executes the programmed
/// integer graph with the reference kernels and refuses what the chip refuses).
/// </summary>
public class AkidaEngineTests
{
    private static readonly ModelPackage s_akd1000 = TestGraphs.Akd1000Shaped(seed: 3);

    public AkidaEngineTests() => EmulatedCard.UseEmulator();

    /// <summary>Six real HAM10000 JPEGs, centred crop, quantized as the classifier does.</summary>
    private static List<sbyte[]> RealInputs(ModelPackage package)
    {
        int size = package.Manifest.Input.Height;
        var spec = package.Graph.Tensors[package.Graph.InputTensor];
        return Directory.GetFiles(TestData.Ham10000Images, "ISIC_*.jpg").Order(StringComparer.Ordinal).Where((_, i) => i % 997 == 0).Take(6)
            .Select(file =>
            {
                var rgb = new byte[size * size * 3];
                Preprocessor.PrepareCentered(File.ReadAllBytes(file), size, rgb);
                var q = new sbyte[spec.Length];
                InputQuantizer.Quantize(rgb, q, spec.Scale, spec.ZeroPoint);
                return q;
            }).ToList();
    }

    [Fact]
    public void ProgrammedAkd1000Package_GivesTheManagedEnginesLogits_OnRealJpegs()
    {
        List<sbyte[]> inputs = RealInputs(s_akd1000);
        Assert.Equal(6, inputs.Count);
        using var managed = IntegerEngine.Create(s_akd1000, KernelMode.Optimized);
        using var akida = AkidaEngine.Open(s_akd1000, EmulatedCard.DeviceNode());
        var distinct = new HashSet<string>();
        var pm = new float[7];
        var pa = new float[7];
        foreach (sbyte[] input in inputs)
        {
            managed.Run(input);
            akida.Run(input);
            Assert.Equal(managed.Logits.ToArray(), akida.Logits.ToArray());
            Assert.Equal(managed.SpikeCounts.ToArray(), akida.SpikeCounts.ToArray());
            managed.GetProbabilities(pm);
            akida.GetProbabilities(pa);
            Assert.Equal(pm, pa);
            distinct.Add(string.Join(",", akida.Logits.ToArray()));
        }
        // The images give different logits: the comparison is not of one saturated vector.
        Assert.True(distinct.Count >= 3, $"only {distinct.Count} distinct logit vectors over {inputs.Count} images");
    }

    [Fact]
    public void Paper8Graph_IsRefusedWithTheDevicesReasons()
    {
        ModelPackage paper8 = TestGraphs.QanaShaped(seed: 3);
        var e = Assert.Throws<AkidaException>(() => AkidaEngine.Open(paper8, EmulatedCard.DeviceNode()));
        Assert.Equal(AkidaStatus.Program, e.Status);
        Assert.StartsWith("program refused: ", e.Message, StringComparison.Ordinal);
        Assert.Contains("AKD1000 constraint violation", e.Message, StringComparison.Ordinal);
        Assert.Contains("outside the 4-bit range [-8, 7]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ACardHasOneOwner_ASecondOpenIsRefusedUntilTheFirstCloses()
    {
        string node = EmulatedCard.DeviceNode();
        AkidaDevice first = AkidaDevice.Open(node);
        var e = Assert.Throws<AkidaException>(() => AkidaDevice.Open(node));
        Assert.Equal(AkidaStatus.Device, e.Status);
        Assert.Contains("device busy", e.Message, StringComparison.Ordinal);
        first.Dispose();
        using AkidaDevice second = AkidaDevice.Open(node);
    }

    [Fact]
    public void BytesThatAreNoPackage_AreRefused()
    {
        using AkidaDevice device = AkidaDevice.Open(EmulatedCard.DeviceNode());
        var e = Assert.Throws<AkidaException>(() => device.Program([1, 2, 3, 4, 5, 6, 7, 8, 9]));
        Assert.Equal(AkidaStatus.Program, e.Status);
        Assert.Contains("not a .qana package", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A program refused on a device that held one leaves it with none: its lengths are 0 again, and an engine built
    /// for the old program fails with the device's state rather than running on the old lengths. Before, the old
    /// lengths stayed, so such an engine passed its checks and a new engine could be built on the empty device.
    /// </summary>
    [Fact]
    public void A_failed_program_leaves_the_device_unprogrammed_and_runs_fail_with_its_state()
    {
        using AkidaDevice device = AkidaEngine.OpenAndProgram(s_akd1000, EmulatedCard.DeviceNode());
        Assert.True(device.IsProgrammed);
        using AkidaEngine engine = AkidaEngine.OnDevice(s_akd1000, device);
        sbyte[] input = TestGraphs.RandomInput(s_akd1000, 1);
        engine.Run(input);

        Assert.Throws<AkidaException>(() => device.Program([1, 2, 3, 4, 5, 6, 7, 8, 9]));
        Assert.False(device.IsProgrammed);
        Assert.Equal(0, device.InputLength);
        Assert.Equal(0, device.OutputLength);
        var e = Assert.Throws<AkidaException>(() => engine.Run(input));
        Assert.Equal(AkidaStatus.State, e.Status);
        Assert.Contains("holds no program", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<AkidaException>(() => device.Run(input, new sbyte[7]));
        Assert.Equal(AkidaStatus.State, e.Status);
        e = Assert.Throws<AkidaException>(() => AkidaEngine.OnDevice(s_akd1000, device));
        Assert.Equal(AkidaStatus.State, e.Status);

        // Programmed again, the engine runs again.
        device.Program(PackageWriter.ToBytes(s_akd1000));
        engine.Run(input);
    }

    /// <summary>
    /// Only a program the card refuses for what it is (the chip's constraints, the emulator's refusal switch) counts as
    /// a refusal of the model, which trying again cannot change; a card that does not open, faults or holds no program,
    /// and a call refused for its arguments, are not.
    /// </summary>
    [Fact]
    public void A_program_refused_for_the_model_is_told_from_a_fault_of_the_card()
    {
        string node = EmulatedCard.DeviceNode();
        sbyte[] input = TestGraphs.RandomInput(s_akd1000, 1);
        var logits = new sbyte[7];
        using (AkidaDevice device = AkidaDevice.Open(node))
        {
            var constraints = Assert.Throws<AkidaException>(() => device.Program(PackageWriter.ToBytes(TestGraphs.QanaShaped(seed: 3))));
            Assert.True(constraints.RefusesTheModel, constraints.Message);

            // The switch: a model the card took before is refused with the file's text, and the refusal is counted.
            File.WriteAllText(node + ".refuse", "program refused: emulated constraint");
            var refused = Assert.Throws<AkidaException>(() => device.Program(PackageWriter.ToBytes(s_akd1000)));
            File.Delete(node + ".refuse");
            Assert.Equal(AkidaStatus.Program, refused.Status);
            Assert.Equal("program refused: emulated constraint", refused.Message);
            Assert.True(refused.RefusesTheModel);
            Assert.Single(File.ReadAllLines(node + ".refused"));

            var noProgram = Assert.Throws<AkidaException>(() => device.Run(input, logits));
            Assert.Equal(AkidaStatus.State, noProgram.Status);
            Assert.False(noProgram.RefusesTheModel);
            var empty = Assert.Throws<AkidaException>(() => device.Program([]));
            Assert.Equal(AkidaStatus.Argument, empty.Status);
            Assert.False(empty.RefusesTheModel);

            device.Program(PackageWriter.ToBytes(s_akd1000));
            File.WriteAllText(node + ".fault", "");
            var fault = Assert.Throws<AkidaException>(() => device.Run(input, logits));
            File.Delete(node + ".fault");
            Assert.Equal(AkidaStatus.Device, fault.Status);
            Assert.False(fault.RefusesTheModel);

            var busy = Assert.Throws<AkidaException>(() => AkidaDevice.Open(node));
            Assert.Equal(AkidaStatus.Device, busy.Status);
            Assert.False(busy.RefusesTheModel);
        }
        File.Delete(node);
        var gone = Assert.Throws<AkidaException>(() => AkidaDevice.Open(node));
        Assert.False(gone.RefusesTheModel);
        Directory.Delete(Path.GetDirectoryName(node)!, recursive: true);
    }

    /// <summary>
    /// The emulator's weight-memory switch: with NODE.flip present the card accepts the program without complaint and
    /// then computes other logits than the managed engine on real JPEGs; programmed again without it, the same logits.
    /// Only running inputs on the card shows such a fault, which is what the daemon's checks rely on.
    /// </summary>
    [Fact]
    public void A_card_whose_weight_memory_flips_a_bit_programs_and_computes_other_logits()
    {
        string node = EmulatedCard.DeviceNode();
        List<sbyte[]> inputs = RealInputs(s_akd1000);
        using var managed = IntegerEngine.Create(s_akd1000, KernelMode.Optimized);
        int differing = 0;
        File.WriteAllText(node + ".flip", "");
        try
        {
            using var flipped = AkidaEngine.Open(s_akd1000, node);
            foreach (sbyte[] input in inputs)
            {
                managed.Run(input);
                flipped.Run(input);
                if (!managed.Logits.SequenceEqual(flipped.Logits)) differing++;
            }
        }
        finally { File.Delete(node + ".flip"); }
        Assert.True(differing > 0, $"the flipped weight changed no logits over {inputs.Count} images");

        using (var sound = AkidaEngine.Open(s_akd1000, node))
        {
            foreach (sbyte[] input in inputs)
            {
                managed.Run(input);
                sound.Run(input);
                Assert.Equal(managed.Logits.ToArray(), sound.Logits.ToArray());
            }
        }
        Directory.Delete(Path.GetDirectoryName(node)!, recursive: true);
    }

    [Fact]
    public void EnqueueBeforeProgram_IsRefused()
    {
        using AkidaDevice device = AkidaDevice.Open(EmulatedCard.DeviceNode());
        Assert.Equal(AkidaStatus.State, device.TryEnqueue(new sbyte[12288], out string error));
        Assert.Contains("before program", error, StringComparison.Ordinal);
    }

    [Fact]
    public void FetchWithNothingEnqueued_WrongInputLength_AndASecondEnqueue_AreRefused()
    {
        using AkidaDevice device = AkidaEngine.OpenAndProgram(s_akd1000, EmulatedCard.DeviceNode());
        var logits = new sbyte[device.OutputLength];
        Assert.Equal(AkidaStatus.State, device.TryFetch(logits, out string error));
        Assert.Equal("fetch with nothing enqueued", error);

        Assert.Equal(AkidaStatus.Shape, device.TryEnqueue(new sbyte[device.InputLength - 1], out error));
        Assert.Equal($"input of {device.InputLength - 1} bytes, the program takes {device.InputLength}", error);

        Assert.Equal(AkidaStatus.Ok, device.TryEnqueue(new sbyte[device.InputLength], out _));
        Assert.Equal(AkidaStatus.Busy, device.TryEnqueue(new sbyte[device.InputLength], out error));
        Assert.Contains("already in flight", error, StringComparison.Ordinal);
        Assert.Equal(AkidaStatus.Ok, device.TryFetch(logits, out _));
    }

    private delegate int OpenExport(IntPtr device, IntPtr output);
    private delegate int ProgramExport(IntPtr device, IntPtr program, nuint length);
    private delegate IntPtr LastErrorExport(IntPtr device);

    /// <summary>
    /// Calls refused for their arguments before they reach a device (a null handle pointer, a null handle), through
    /// the library's exports as a C caller makes them: each sets its own message where qana_akida_last_error(NULL)
    /// reads it. Before, they set none, and the caller reported what an earlier failed open had left as their reason.
    /// The shim over BrainChip's engine (native/akida/qana_akida_engine.cpp) does the same.
    /// </summary>
    [Fact]
    public void A_call_refused_for_its_arguments_reports_its_own_reason_not_an_earlier_one()
    {
        // Not freed: a Native AOT library is not unloaded, and the imports share it.
        IntPtr library = NativeLibrary.Load(TestData.AkidaEmulator);
        var open = Marshal.GetDelegateForFunctionPointer<OpenExport>(NativeLibrary.GetExport(library, "qana_akida_open"));
        var program = Marshal.GetDelegateForFunctionPointer<ProgramExport>(NativeLibrary.GetExport(library, "qana_akida_program"));
        var lastError = Marshal.GetDelegateForFunctionPointer<LastErrorExport>(NativeLibrary.GetExport(library, "qana_akida_last_error"));
        string ThreadError() => Marshal.PtrToStringUTF8(lastError(IntPtr.Zero))!;
        IntPtr missing = Marshal.StringToCoTaskMemUTF8(Path.Combine(Path.GetTempPath(), "qana-akida-tests", "no-such-dir", "akida9"));
        IntPtr node = Marshal.StringToCoTaskMemUTF8(EmulatedCard.DeviceNode());
        IntPtr handle = Marshal.AllocHGlobal(IntPtr.Size);
        try
        {
            Assert.Equal((int)AkidaStatus.Device, open(missing, handle));
            Assert.EndsWith("no such device", ThreadError(), StringComparison.Ordinal);

            Assert.Equal((int)AkidaStatus.Argument, open(node, IntPtr.Zero));
            Assert.Equal("the handle pointer is null", ThreadError());

            Assert.Equal((int)AkidaStatus.Device, open(missing, handle));
            Assert.Equal((int)AkidaStatus.Argument, program(IntPtr.Zero, IntPtr.Zero, 0));
            Assert.Equal("the device handle is null", ThreadError());
        }
        finally
        {
            Marshal.FreeCoTaskMem(missing);
            Marshal.FreeCoTaskMem(node);
            Marshal.FreeHGlobal(handle);
        }
    }

    [Fact]
    public void OpeningAMissingNode_FailsWithTheDevicesMessage()
    {
        string missing = Path.Combine(Path.GetTempPath(), "qana-akida-tests", "no-such-dir", "akida9");
        var e = Assert.Throws<AkidaException>(() => AkidaDevice.Open(missing));
        Assert.Equal(AkidaStatus.Device, e.Status);
        Assert.Equal($"{missing}: {missing}: no such device", e.Message);
    }

    [Fact]
    public void Run_AllocatesNothing_AfterWarmUp()
    {
        sbyte[] input = TestGraphs.RandomInput(s_akd1000, 1);
        using var akida = AkidaEngine.Open(s_akd1000, EmulatedCard.DeviceNode());
        Assert.Equal(0, EngineChecks.AllocatedBytesAfterWarmUp(akida, input, runs: 5));
    }

    [Fact]
    public void TheEngine_ServesLesionClassifier_LikeTheManagedEngine()
    {
        string jpeg = Directory.GetFiles(TestData.Ham10000Images, "ISIC_*.jpg").Order(StringComparer.Ordinal).First();
        byte[] bytes = File.ReadAllBytes(jpeg);
        using var managedEngine = LesionClassifier.CreateEngine(s_akd1000);
        using var akidaEngine = AkidaEngine.Open(s_akd1000, EmulatedCard.DeviceNode());
        LesionResult m = new LesionClassifier(s_akd1000, managedEngine).Classify(bytes);
        LesionResult a = new LesionClassifier(s_akd1000, akidaEngine).Classify(bytes);
        Assert.Equal(m.Probabilities, a.Probabilities);
        Assert.Equal(m.Label, a.Label);
        Assert.Equal(m.Tiled, a.Tiled);
    }
}
